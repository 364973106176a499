//! `berthctl delete`: by `TYPE NAME…`, `TYPE/NAME`, `-f`, `-l`, `--all` (`-A`), with kubectl's
//! `--grace-period` / `--force` / `--now`, `--cascade` (→ `propagationPolicy`), `--wait`
//! (default on: waits until the objects are gone, bounded by `--timeout`) and
//! `--ignore-not-found`; prints `pod "x" deleted` as kubectl does.

use std::time::Duration;

use http::Method;
use serde_json::{json, Value};

use crate::cmd::objects::{self, call, finish, DryRun, DryRunArg, Obj, Request, SelectFlags, Selection};
use crate::error::{CtlError, Result};
use crate::session::{parse_duration, Session};
use crate::Out;

/// kubectl's warning for `--force` with a zero grace period.
const FORCE_WARNING: &str = "Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.";

/// Flags of `delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// TYPE NAME…, TYPE/NAME…, or TYPE with -l / --all.
    pub resources: Vec<String>,
    /// Which objects: -f/-R, -l, --field-selector, --all, -A.
    #[command(flatten)]
    pub select: SelectFlags,
    /// Seconds given to the resource to terminate gracefully (negative: the object's default;
    /// 0 only with --force).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// Immediately remove the resources from the API and bypass graceful deletion.
    #[arg(long)]
    pub force: bool,
    /// Delete with a grace period of 1 second.
    #[arg(long)]
    pub now: bool,
    /// background, foreground or orphan: what happens to the dependents.
    #[arg(long, default_value = "background", num_args = 0..=1, require_equals = true, default_missing_value = "background")]
    pub cascade: String,
    /// Wait for the resources to be gone before returning.
    #[arg(long, default_value = "true", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub wait: String,
    /// How long to wait for the deletion (0: a week).
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// Treat "resource not found" as a successful delete.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Output mode: only `name` (prints `pod/x`).
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[command(flatten)]
    pub dry_run: DryRunArg,
}

/// The DeleteOptions fields a `delete` sends, decided from the flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub grace_period: Option<i64>,
    pub propagation: &'static str,
    /// `force deleted` instead of `deleted`, plus kubectl's warning.
    pub forced: bool,
    pub wait: bool,
    pub timeout: Duration,
}

/// kubectl's flag rules: `--force` means grace 0 unless given; `--grace-period=0` without
/// `--force` becomes 1; `--now` is 1; `--cascade=true|false` are the deprecated spellings.
pub fn plan(args: &DeleteArgs) -> Result<Plan> {
    let mut grace = args.grace_period;
    if args.now {
        if grace >= 0 {
            return Err(CtlError::usage("--now and --grace-period cannot be specified together"));
        }
        grace = 1;
    }
    if args.force && grace < 0 {
        grace = 0;
    }
    if grace == 0 && !args.force {
        grace = 1;
    }
    let propagation = match args.cascade.as_str() {
        "background" => "Background",
        "foreground" => "Foreground",
        "orphan" => "Orphan",
        "true" => {
            eprintln!(
                "warning: --cascade=true is deprecated (boolean value) and can be replaced with --cascade=background."
            );
            "Background"
        }
        "false" => {
            eprintln!(
                "warning: --cascade=false is deprecated (boolean value) and can be replaced with --cascade=orphan."
            );
            "Orphan"
        }
        other => {
            return Err(CtlError::usage(format!(
                "invalid cascade value ({other}). Must be \"background\", \"foreground\", or \"orphan\"."
            )))
        }
    };
    let wait = match args.wait.as_str() {
        "true" => true,
        "false" => false,
        other => return Err(CtlError::usage(format!("invalid argument \"{other}\" for \"--wait\" flag"))),
    };
    let timeout = parse_duration(&args.timeout)
        .ok_or_else(|| CtlError::usage(format!("invalid --timeout {:?}", args.timeout)))?;
    let timeout = if timeout.is_zero() { Duration::from_secs(168 * 3600) } else { timeout };
    Ok(Plan {
        grace_period: (grace >= 0).then_some(grace),
        propagation,
        forced: args.force && grace == 0,
        wait,
        timeout,
    })
}

/// The DeleteOptions body.
pub fn delete_options(plan: &Plan) -> Value {
    let mut body = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": plan.propagation});
    if let Some(g) = plan.grace_period {
        body["gracePeriodSeconds"] = json!(g);
    }
    body
}

/// kubectl's line for a deleted object: `deployment.apps "web" deleted`.
pub fn deleted_message(obj: &Obj, forced: bool, dry: DryRun) -> String {
    let verb = if forced { "force deleted" } else { "deleted" };
    format!("{} \"{}\" {verb}{}", obj.info.qualified_singular(), obj.name, dry.suffix())
}

/// Runs `delete`.
pub async fn run(s: &mut Session, args: DeleteArgs, out: &mut Out) -> Result<()> {
    let plan = plan(&args)?;
    let dry = args.dry_run.get()?;
    let name_only = match args.output.as_deref() {
        None | Some("") => false,
        Some("name") => true,
        Some(other) => {
            return Err(CtlError::usage(format!("unexpected -o output mode: {other}. We only support '-o name'")))
        }
    };
    let sel = Selection { args: args.resources.clone(), flags: args.select.clone() };
    let found = objects::select(s, &sel, false).await?;
    if found.objects.is_empty() && found.errors.is_empty() && found.listed {
        return crate::emit(out, "No resources found\n");
    }
    if plan.forced {
        eprintln!("{FORCE_WARNING}");
    }
    let mut errors = found.errors;
    let mut deleted = Vec::new();
    for obj in found.objects {
        let req = Request::new(Method::DELETE, obj.path()).body("application/json", delete_options(&plan)).dry_run(dry);
        let result = if dry == DryRun::Client { Ok(Value::Null) } else { call(s, req).await };
        match result {
            Ok(answer) => {
                let text = if name_only { obj.type_name() } else { deleted_message(&obj, plan.forced, dry) };
                crate::emit(out, &format!("{text}\n"))?;
                // The deleted object, or a Status naming it (details.uid): a controller may
                // make a new one of the same name at once, which must not count as the old.
                let uid = match answer["kind"].as_str() {
                    Some("Status") => answer["details"]["uid"].as_str(),
                    _ => answer["metadata"]["uid"].as_str(),
                };
                let uid = uid.filter(|u| !u.is_empty()).map(str::to_string);
                deleted.push((obj, uid));
            }
            Err(e) if e.is_not_found() && args.ignore_not_found => {}
            Err(e) => match &obj.source {
                Some(source) => errors.push(crate::cmd::apply::with_context(e, "deleting", source)),
                None => errors.push(e),
            },
        }
    }
    if plan.wait && dry == DryRun::None {
        let deadline = tokio::time::Instant::now() + plan.timeout;
        for (obj, uid) in &deleted {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !objects::wait_deleted(s, obj, uid.as_deref(), left).await? {
                errors.push(CtlError::usage(format!(
                    "timed out waiting for the condition on {}/{}",
                    obj.info.qualified_plural(),
                    obj.name
                )));
            }
        }
    }
    finish(errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct D {
        #[command(flatten)]
        delete: DeleteArgs,
    }

    fn args(argv: &[&str]) -> DeleteArgs {
        D::try_parse_from(std::iter::once("delete").chain(argv.iter().copied())).unwrap().delete
    }

    #[test]
    fn grace_and_force_rules() {
        let p = plan(&args(&["pod", "x"])).unwrap();
        assert_eq!((p.grace_period, p.propagation, p.forced, p.wait), (None, "Background", false, true));
        assert_eq!(p.timeout, Duration::from_secs(168 * 3600));
        let p = plan(&args(&["pod", "x", "--force"])).unwrap();
        assert_eq!((p.grace_period, p.forced), (Some(0), true));
        let p = plan(&args(&["pod", "x", "--grace-period=0"])).unwrap();
        assert_eq!((p.grace_period, p.forced), (Some(1), false));
        let p = plan(&args(&["pod", "x", "--grace-period=0", "--force"])).unwrap();
        assert_eq!((p.grace_period, p.forced), (Some(0), true));
        let p = plan(&args(&["pod", "x", "--now", "--wait=false", "--timeout=5s"])).unwrap();
        assert_eq!((p.grace_period, p.wait, p.timeout), (Some(1), false, Duration::from_secs(5)));
        assert!(plan(&args(&["pod", "x", "--now", "--grace-period=3"])).is_err());
    }

    #[test]
    fn cascade_maps_to_propagation_policy() {
        assert_eq!(plan(&args(&["deploy", "x", "--cascade=orphan"])).unwrap().propagation, "Orphan");
        assert_eq!(plan(&args(&["deploy", "x", "--cascade=foreground"])).unwrap().propagation, "Foreground");
        assert_eq!(plan(&args(&["deploy", "x", "--cascade"])).unwrap().propagation, "Background");
        assert_eq!(plan(&args(&["deploy", "x", "--cascade=false"])).unwrap().propagation, "Orphan");
        assert_eq!(
            plan(&args(&["deploy", "x", "--cascade=sideways"])).unwrap_err().to_string(),
            "error: invalid cascade value (sideways). Must be \"background\", \"foreground\", or \"orphan\"."
        );
        let p = plan(&args(&["pod", "x", "--force", "--cascade=orphan"])).unwrap();
        assert_eq!(
            delete_options(&p),
            json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Orphan", "gracePeriodSeconds": 0})
        );
    }

    #[test]
    fn messages() {
        let info = crate::resources::ResourceInfo {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            plural: "deployments".into(),
            singular: "deployment".into(),
            short_names: vec![],
            namespaced: true,
            verbs: vec![],
            categories: vec![],
        };
        let obj =
            Obj { info, namespace: Some("default".into()), name: "web".into(), object: Value::Null, source: None };
        assert_eq!(deleted_message(&obj, false, DryRun::None), "deployment.apps \"web\" deleted");
        assert_eq!(deleted_message(&obj, true, DryRun::None), "deployment.apps \"web\" force deleted");
        assert_eq!(deleted_message(&obj, false, DryRun::Server), "deployment.apps \"web\" deleted (server dry run)");
    }
}
