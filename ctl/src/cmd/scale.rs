//! `berthctl scale`: sets `spec.replicas` through the `scale` subresource, with kubectl's
//! `--current-replicas` / `--resource-version` preconditions (read the Scale, compare, write
//! it back pinned to the resourceVersion read) and messages (`deployment.apps/web scaled`).

use http::Method;
use serde_json::{json, Value};

use crate::cmd::objects::{self, call, finish, DryRun, Obj, PickWriteFlags, Request, MERGE_PATCH};
use crate::error::{CtlError, Result};
use crate::session::Session;
use crate::Out;

/// Kinds with a scale subresource.
const SCALABLE: &[&str] = &["Deployment", "ReplicaSet", "StatefulSet", "ReplicationController"];

/// Flags of `scale`.
#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// TYPE NAME… or TYPE/NAME….
    pub resources: Vec<String>,
    /// The new desired number of replicas.
    #[arg(long, required = true)]
    pub replicas: i64,
    /// Precondition for current size: only scale if the current replica count is this (-1: no check).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub current_replicas: i64,
    /// Precondition for resource version: only scale if it matches.
    #[arg(long)]
    pub resource_version: Option<String>,
    /// Which objects, -o and --dry-run.
    #[command(flatten)]
    pub write: PickWriteFlags,
}

/// The write a scale needs: a pinned PUT of the Scale when a precondition was given, else a
/// merge patch of `spec.replicas`. `Err` is kubectl's precondition message.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Patch(Value),
    Put(Value),
}

/// Decides the write from the current Scale (when a precondition needed it).
pub fn plan(
    replicas: i64,
    current_replicas: i64,
    resource_version: Option<&str>,
    scale: Option<&Value>,
) -> Result<Write> {
    if replicas < 0 {
        return Err(CtlError::usage(
            "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0",
        ));
    }
    let Some(scale) = scale else {
        return Ok(Write::Patch(json!({"spec": {"replicas": replicas}})));
    };
    let have = scale["spec"]["replicas"].as_i64().unwrap_or(0);
    if current_replicas >= 0 && have != current_replicas {
        return Err(CtlError::usage(format!("Expected replicas to be {current_replicas}, was {have}")));
    }
    let live_rv = scale["metadata"]["resourceVersion"].as_str().unwrap_or_default();
    if let Some(rv) = resource_version {
        if rv != live_rv {
            return Err(CtlError::usage(format!("Expected resource version to be {rv}, was {live_rv}")));
        }
    }
    let mut next = scale.clone();
    next["spec"]["replicas"] = json!(replicas);
    Ok(Write::Put(next))
}

/// Runs `scale`.
pub async fn run(s: &mut Session, args: ScaleArgs, out: &mut Out) -> Result<()> {
    let (dry, format) = args.write.modes()?;
    let sel = args.write.selection(args.resources.clone());
    let found = objects::select(s, &sel, true).await?;
    if found.objects.is_empty() {
        return Err(nothing_to_scale(found.errors));
    }
    let mut errors = found.errors;
    for obj in found.objects {
        if let Err(e) = scale_one(s, &args, &obj, dry, format.as_ref(), out).await {
            errors.push(e);
        }
    }
    finish(errors)
}

/// kubectl's wording when nothing it was given exists: `no objects passed to scale` and the
/// lookup errors (one bare, several as `[a, b]`).
fn nothing_to_scale(errors: Vec<CtlError>) -> CtlError {
    let messages: Vec<String> = errors
        .into_iter()
        .map(|e| match e {
            CtlError::Server { message, .. } => message,
            other => other.to_string(),
        })
        .collect();
    match messages.len() {
        0 => CtlError::usage("no objects passed to scale"),
        1 => CtlError::usage(format!("no objects passed to scale {}", messages[0])),
        _ => CtlError::usage(format!("no objects passed to scale [{}]", messages.join(", "))),
    }
}

async fn scale_one(
    s: &mut Session,
    args: &ScaleArgs,
    obj: &Obj,
    dry: DryRun,
    format: Option<&crate::output::OutputFormat>,
    out: &mut Out,
) -> Result<()> {
    if !SCALABLE.contains(&obj.info.kind.as_str()) {
        return Err(CtlError::usage(format!("cannot scale a {} ({})", obj.info.kind, obj.type_name())));
    }
    let path = format!("{}/scale", obj.path());
    let needs_read = args.current_replicas >= 0 || args.resource_version.is_some();
    let scale = if needs_read { Some(call(s, Request::get(path.clone())).await?) } else { None };
    let write = plan(args.replicas, args.current_replicas, args.resource_version.as_deref(), scale.as_ref())?;
    let mut result = obj.object.clone();
    if dry != DryRun::Client {
        let req = match write {
            Write::Patch(p) => Request::new(Method::PATCH, path).body(MERGE_PATCH, p),
            Write::Put(scale) => Request::new(Method::PUT, path).body("application/json", scale),
        };
        call(s, req.param("fieldManager", "kubectl-scale").dry_run(dry)).await?;
        if format.is_some() {
            result = call(s, Request::get(obj.path())).await?;
        }
    }
    objects::report(out, format, obj, &result, &format!("{} scaled{}", obj.type_name(), dry.suffix()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preconditions() {
        assert_eq!(plan(3, -1, None, None).unwrap(), Write::Patch(json!({"spec": {"replicas": 3}})));
        let scale =
            json!({"kind": "Scale", "metadata": {"name": "web", "resourceVersion": "7"}, "spec": {"replicas": 3}});
        assert_eq!(plan(5, 2, None, Some(&scale)).unwrap_err().to_string(), "error: Expected replicas to be 2, was 3");
        let Write::Put(next) = plan(5, 3, None, Some(&scale)).unwrap() else { panic!("a pinned write") };
        assert_eq!(next["spec"]["replicas"], 5);
        assert_eq!(next["metadata"]["resourceVersion"], "7");
        assert!(plan(5, -1, Some("6"), Some(&scale)).is_err());
        assert!(plan(-1, -1, None, None).is_err());
    }

    #[test]
    fn missing_objects_read_like_kubectl() {
        let nf = |n: &str| CtlError::not_found("deployments.apps", n);
        assert_eq!(
            nothing_to_scale(vec![nf("a")]).to_string(),
            "error: no objects passed to scale deployments.apps \"a\" not found"
        );
        assert_eq!(
            nothing_to_scale(vec![nf("a"), nf("b")]).to_string(),
            "error: no objects passed to scale [deployments.apps \"a\" not found, deployments.apps \"b\" not found]"
        );
    }
}
