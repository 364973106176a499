//! `berthctl rollout status|history|undo|restart|pause|resume`, kubectl's rollout verbs.
//! Targets are `TYPE NAME…`, `TYPE/NAME…`, or `TYPE` with `-l`. The decisions are pure
//! ([`status`] viewers, [`history`] table and rollback plan, the patches below); this
//! module fetches, patches, and prints kubectl's `deployment.apps/web restarted` lines.
//! `history` and `undo` read Deployments' ReplicaSets ([`history`]) and DaemonSets' and
//! StatefulSets' ControllerRevisions ([`controller_history`]).

pub mod controller_history;
pub mod deployutil;
pub mod history;
pub mod status;

use berth_proto::model::well_known::ANNOTATION_RESTARTED_AT;
use serde_json::{json, Value};

use crate::cmd::describe::fetch::{self, ListOptions};
use crate::error::{CtlError, Result};
use crate::output::name_of;
use crate::resources::{parse_targets, ResourceInfo};
use crate::session::{parse_duration, Session};
use crate::{emit, Out};

/// Flags of `rollout`.
#[derive(Debug, clap::Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub command: RolloutCommand,
}

/// The rollout verbs.
#[derive(Debug, clap::Subcommand)]
pub enum RolloutCommand {
    /// Show the status of the rollout.
    Status(StatusArgs),
    /// View rollout history.
    History(HistoryArgs),
    /// Undo a previous rollout.
    Undo(UndoArgs),
    /// Restart a resource.
    Restart(TargetArgs),
    /// Mark the provided resource as paused.
    Pause(TargetArgs),
    /// Resume a paused resource.
    Resume(TargetArgs),
}

/// Which objects a rollout verb acts on.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// TYPE NAME… or TYPE/NAME…
    pub args: Vec<String>,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

/// Flags of `rollout status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Watch the status of the rollout until it's done.
    #[arg(short = 'w', long, default_value = "true", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub watch: bool,
    /// Pin to a specific revision for showing its status. Defaults to 0 (last revision).
    #[arg(long, default_value_t = 0)]
    pub revision: i64,
    /// The length of time to wait before ending watch, zero means never (e.g. 1s, 2m, 3h).
    #[arg(long, default_value = "0s")]
    pub timeout: String,
}

/// Flags of `rollout history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// See the details, including podTemplate of the revision specified.
    #[arg(long, default_value_t = 0)]
    pub revision: i64,
}

/// Flags of `rollout undo`.
#[derive(Debug, clap::Args)]
pub struct UndoArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The revision to rollback to. Default to 0 (last revision).
    #[arg(long, default_value_t = 0)]
    pub to_revision: i64,
}

/// kubectl's usage error for a rollout verb without targets.
fn no_targets(verb: &str) -> CtlError {
    CtlError::usage(format!(
        "You must provide one or more resources by argument or filename.\nExample resource specifications include:\n   '-f rsrc.yaml'\n   '--filename=rsrc.json'\n   '<resource> <name>'\n   '<resource>'\nSee 'berthctl rollout {verb} -h' for help and examples"
    ))
}

/// The objects named by `TYPE NAME…` / `TYPE/NAME…` / `TYPE -l …` (fetched fresh).
async fn targets(session: &mut Session, args: &TargetArgs, verb: &str) -> Result<Vec<(ResourceInfo, Value)>> {
    if args.args.is_empty() {
        return Err(no_targets(verb));
    }
    let resolver = session.resolver().await?;
    let namespace = session.namespace()?;
    let groups = parse_targets(&args.args)?;
    if args.selector.is_some() && groups.iter().any(|g| !g.names.is_empty()) {
        return Err(CtlError::usage("name cannot be provided when a selector is specified"));
    }
    let mut found = Vec::new();
    for group in groups {
        let info = resolver.resolve(&group.type_word)?.clone();
        let ns = info.namespaced.then_some(namespace.as_str());
        if group.names.is_empty() {
            let opts = ListOptions { label_selector: args.selector.clone(), field_selector: None };
            found.extend(fetch::list(session, &info, ns, &opts).await?.into_iter().map(|o| (info.clone(), o)));
        } else {
            for name in &group.names {
                let object = fetch::get(session, &info.url_path(ns, Some(name))).await?;
                found.push((info.clone(), object));
            }
        }
    }
    if found.is_empty() {
        return Err(CtlError::usage(format!("no objects passed to {verb}")));
    }
    Ok(found)
}

/// Runs `rollout …`.
pub async fn run(session: &mut Session, args: RolloutArgs, out: &mut Out) -> Result<()> {
    match args.command {
        RolloutCommand::Status(a) => run_status(session, a, out).await,
        RolloutCommand::History(a) => run_history(session, a, out).await,
        RolloutCommand::Undo(a) => run_undo(session, a, out).await,
        RolloutCommand::Restart(a) => run_patch(session, a, Action::Restart, out).await,
        RolloutCommand::Pause(a) => run_patch(session, a, Action::Pause, out).await,
        RolloutCommand::Resume(a) => run_patch(session, a, Action::Resume, out).await,
    }
}

async fn run_status(session: &mut Session, args: StatusArgs, out: &mut Out) -> Result<()> {
    let timeout = parse_duration(&args.timeout)
        .ok_or_else(|| CtlError::usage(format!("invalid argument {:?} for \"--timeout\" flag", args.timeout)))?;
    let timeout = (!timeout.is_zero()).then_some(timeout);
    // Like kubectl, one object after the other, each with its own timeout.
    for (info, object) in targets(session, &args.target, "status").await? {
        status::status_of(&info, &object, args.revision).map_err(CtlError::Usage)?;
        status::watch_status(session, &info, object, args.revision, args.watch, timeout, out).await?;
    }
    Ok(())
}

fn require_deployment(info: &ResourceInfo, what: &str) -> Result<()> {
    if info.kind == "Deployment" && matches!(info.group.as_str(), "apps" | "extensions") {
        Ok(())
    } else {
        Err(CtlError::usage(format!("no {what} has been implemented for {:?}", status::kind_string(info))))
    }
}

async fn run_history(session: &mut Session, args: HistoryArgs, out: &mut Out) -> Result<()> {
    for (info, object) in targets(session, &args.target, "history").await? {
        let text = if controller_history::keeps_revisions(&info) {
            let revisions = controller_history::owned_revisions(session, &object).await?;
            controller_history::view_history(&revisions, args.revision)
        } else {
            require_deployment(&info, "history viewer")?;
            let replica_sets = deployutil::owned_replica_sets(session, &object).await?;
            history::view_history(&replica_sets, args.revision)
        };
        let text = text.map_err(CtlError::Usage)?;
        emit(out, &format!("{} {text}\n", name_of(&info, &object)))?;
    }
    Ok(())
}

async fn run_undo(session: &mut Session, args: UndoArgs, out: &mut Out) -> Result<()> {
    for (info, object) in targets(session, &args.target, "undo").await? {
        // Deployments get a JSON patch of the template; DaemonSets and StatefulSets their
        // revision's data as a strategic merge patch, as kubectl sends them.
        let (decision, content_type) = if controller_history::keeps_revisions(&info) {
            let revisions = controller_history::owned_revisions(session, &object).await?;
            let decision = controller_history::plan_rollback(&object, &revisions, args.to_revision);
            (decision, "application/strategic-merge-patch+json")
        } else {
            require_deployment(&info, "rollbacker")?;
            let replica_sets = deployutil::owned_replica_sets(session, &object).await?;
            (history::plan_rollback(&object, &replica_sets, args.to_revision), "application/json-patch+json")
        };
        match decision.map_err(CtlError::Usage)? {
            history::Rollback::Skip(message) => emit(out, &format!("{} {message}\n", name_of(&info, &object)))?,
            history::Rollback::Patch(patch) => {
                let (ns, name) = fetch::ns_name(&object);
                patch_object(session, &info, ns, name, content_type, &patch)
                    .await
                    .map_err(|e| CtlError::usage(format!("failed restoring revision {}: {e}", args.to_revision)))?;
                emit(out, &format!("{} rolled back\n", name_of(&info, &object)))?;
            }
        }
    }
    Ok(())
}

/// The patch-style rollout verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Restart,
    Pause,
    Resume,
}

/// kubectl's `ObjectRestarter` / `ObjectPauser` / `ObjectResumer`: the merge patch to
/// send, or the error kubectl reports after `<resource> "<name>"`.
pub fn plan_patch(
    info: &ResourceInfo,
    object: &Value,
    action: Action,
    now: &str,
) -> std::result::Result<Value, String> {
    let kind = (info.group.as_str(), info.kind.as_str());
    let paused = object["spec"]["paused"].as_bool() == Some(true);
    let is_deployment = matches!(kind, ("apps" | "extensions", "Deployment"));
    match action {
        Action::Restart => {
            if !matches!(kind, ("apps" | "extensions", "Deployment" | "DaemonSet") | ("apps", "StatefulSet")) {
                return Err("restarting is not supported".into());
            }
            if is_deployment && paused {
                return Err("can't restart paused deployment (run rollout resume first)".into());
            }
            Ok(json!({"spec": {"template": {"metadata": {"annotations": {ANNOTATION_RESTARTED_AT: now}}}}}))
        }
        Action::Pause | Action::Resume if !is_deployment => {
            Err(format!("{} is not supported", if action == Action::Pause { "pausing" } else { "resuming" }))
        }
        Action::Pause if paused => Err("is already paused".into()),
        Action::Resume if !paused => Err("is not paused".into()),
        Action::Pause => Ok(json!({"spec": {"paused": true}})),
        Action::Resume => Ok(json!({"spec": {"paused": null}})),
    }
}

async fn run_patch(session: &mut Session, args: TargetArgs, action: Action, out: &mut Out) -> Result<()> {
    let verb = match action {
        Action::Restart => "restart",
        Action::Pause => "pause",
        Action::Resume => "resume",
    };
    let mut errors: Vec<String> = Vec::new();
    let now = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for (info, object) in targets(session, &args, verb).await? {
        let (ns, name) = fetch::ns_name(&object);
        let patch = match plan_patch(&info, &object, action, &now) {
            Ok(p) => p,
            Err(reason) => {
                errors.push(format!("error: {} {name:?} {reason}", info.qualified_plural()));
                continue;
            }
        };
        patch_object(session, &info, ns, name, "application/merge-patch+json", &patch).await?;
        let done = match action {
            Action::Restart => "restarted",
            Action::Pause => "paused",
            Action::Resume => "resumed",
        };
        emit(out, &format!("{} {done}\n", name_of(&info, &object)))?;
    }
    if errors.is_empty() {
        return Ok(());
    }
    // kubectl joins the per-object errors; each already reads `error: …`.
    eprintln!("{}", errors.join("\n"));
    Err(CtlError::Exit(1))
}

/// PATCHes one object with `content_type`.
async fn patch_object(
    session: &mut Session,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    content_type: &str,
    patch: &Value,
) -> Result<Value> {
    let path = info.url_path(if info.namespaced { ns } else { None }, Some(name));
    let body = serde_json::to_vec(patch).map_err(|e| CtlError::usage(e.to_string()))?;
    tracing::debug!(%path, content_type, "PATCH");
    session
        .call(|client| {
            let (path, body, content_type) = (path.clone(), body.clone(), content_type.to_string());
            async move {
                let req = http::Request::patch(path)
                    .header(http::header::CONTENT_TYPE, content_type)
                    .body(body)
                    .expect("a PATCH request builds");
                client.request::<Value>(req).await
            }
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(group: &str, kind: &str, plural: &str) -> ResourceInfo {
        ResourceInfo::for_test(group, kind, plural, &[], true)
    }

    #[test]
    fn patches_follow_kubectl() {
        let d = info("apps", "Deployment", "deployments");
        let running = json!({"spec": {}});
        let paused = json!({"spec": {"paused": true}});
        assert_eq!(
            plan_patch(&d, &running, Action::Restart, "T").unwrap(),
            json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "T"}}}}})
        );
        assert_eq!(
            plan_patch(&d, &paused, Action::Restart, "T").unwrap_err(),
            "can't restart paused deployment (run rollout resume first)"
        );
        assert_eq!(plan_patch(&d, &running, Action::Pause, "T").unwrap(), json!({"spec": {"paused": true}}));
        assert_eq!(plan_patch(&d, &paused, Action::Pause, "T").unwrap_err(), "is already paused");
        assert_eq!(plan_patch(&d, &running, Action::Resume, "T").unwrap_err(), "is not paused");
        assert_eq!(plan_patch(&d, &paused, Action::Resume, "T").unwrap(), json!({"spec": {"paused": null}}));
        let pod = info("", "Pod", "pods");
        assert_eq!(plan_patch(&pod, &running, Action::Restart, "T").unwrap_err(), "restarting is not supported");
        let ds = info("apps", "DaemonSet", "daemonsets");
        assert_eq!(plan_patch(&ds, &running, Action::Pause, "T").unwrap_err(), "pausing is not supported");
        assert!(plan_patch(&ds, &running, Action::Restart, "T").is_ok());
    }
}
