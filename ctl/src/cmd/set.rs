//! `berthctl set image`: `CONTAINER=IMAGE…` (`*=IMAGE` for every container) on pods and pod
//! templates (deployments, replica sets, daemon sets, stateful sets, jobs, cron jobs), sent as
//! a strategic merge patch of just the changed containers; kubectl's messages
//! (`deployment.apps/web image updated`, nothing when nothing changes).

use http::Method;
use serde_json::{json, Value};

use crate::cmd::objects::{self, call, finish, DryRun, Obj, PickWriteFlags, Request, STRATEGIC_PATCH};
use crate::error::{CtlError, Result};
use crate::session::Session;
use crate::Out;

/// Flags of `set`.
#[derive(Debug, clap::Args)]
pub struct SetArgs {
    #[command(subcommand)]
    pub what: SetWhat,
}

/// What to set.
#[derive(Debug, clap::Subcommand)]
pub enum SetWhat {
    /// Update the image of a pod template.
    Image(SetImageArgs),
}

/// Flags of `set image`.
#[derive(Debug, clap::Args)]
pub struct SetImageArgs {
    /// TYPE NAME… or TYPE/NAME…, then CONTAINER=IMAGE….
    pub args: Vec<String>,
    /// Which objects, -o and --dry-run.
    #[command(flatten)]
    pub write: PickWriteFlags,
    /// Name of the manager used to track field ownership.
    #[arg(long, default_value = "kubectl-set")]
    pub field_manager: String,
}

/// Where a kind keeps its pod spec.
fn pod_spec_path(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Pod" => Some(&["spec"]),
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
        "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet" | "Job" | "ReplicationController" => {
            Some(&["spec", "template", "spec"])
        }
        _ => None,
    }
}

/// Parses `CONTAINER=IMAGE` pairs.
pub fn parse_images(specs: &[String]) -> Result<Vec<(String, String)>> {
    if specs.is_empty() {
        return Err(CtlError::usage("at least one image update is required"));
    }
    specs
        .iter()
        .map(|s| match s.split_once('=') {
            Some((c, i)) if !c.is_empty() && !i.is_empty() => Ok((c.to_string(), i.to_string())),
            _ => Err(CtlError::usage(format!("invalid image update: {s}"))),
        })
        .collect()
}

/// The strategic merge patch that sets the images, or `None` when every image already is what
/// was asked; kubectl's error for a container name the object does not have.
pub fn image_patch(kind: &str, object: &Value, images: &[(String, String)]) -> Result<Option<Value>> {
    let path = pod_spec_path(kind).ok_or_else(|| CtlError::usage(format!("cannot set image on a {kind}")))?;
    let mut spec = object;
    for p in path {
        spec = &spec[*p];
    }
    let mut patch_spec = serde_json::Map::new();
    for (name, _) in images {
        let known = name == "*"
            || ["containers", "initContainers"]
                .iter()
                .any(|list| spec[*list].as_array().into_iter().flatten().any(|c| c["name"] == name.as_str()));
        if !known {
            return Err(CtlError::usage(format!("unable to find container named \"{name}\"")));
        }
    }
    for list in ["initContainers", "containers"] {
        let mut changed = Vec::new();
        for c in spec[list].as_array().into_iter().flatten() {
            let cname = c["name"].as_str().unwrap_or_default();
            // A named entry wins over `*`, whatever the order on the command line.
            let wanted = images.iter().find(|(n, _)| n == cname).or_else(|| images.iter().find(|(n, _)| n == "*"));
            if let Some((_, image)) = wanted {
                if c["image"].as_str() != Some(image) {
                    changed.push(json!({"name": cname, "image": image}));
                }
            }
        }
        if !changed.is_empty() {
            patch_spec.insert(list.to_string(), json!(changed));
        }
    }
    if patch_spec.is_empty() {
        return Ok(None);
    }
    let mut patch = Value::Object(patch_spec);
    for p in path.iter().rev() {
        patch = json!({ *p: patch });
    }
    Ok(Some(patch))
}

/// Runs `set`.
pub async fn run(s: &mut Session, args: SetArgs, out: &mut Out) -> Result<()> {
    let SetWhat::Image(args) = args.what;
    let (dry, format) = args.write.modes()?;
    let (resources, specs) = objects::split_edits(&args.args);
    let images = parse_images(&specs)?;
    let sel = args.write.selection(resources);
    let found = objects::select(s, &sel, true).await?;
    let mut errors = found.errors;
    for obj in found.objects {
        if let Err(e) = one(s, &args, &obj, &images, dry, format.as_ref(), out).await {
            errors.push(e);
        }
    }
    finish(errors)
}

async fn one(
    s: &mut Session,
    args: &SetImageArgs,
    obj: &Obj,
    images: &[(String, String)],
    dry: DryRun,
    format: Option<&crate::output::OutputFormat>,
    out: &mut Out,
) -> Result<()> {
    let Some(patch) = image_patch(&obj.info.kind, &obj.object, images)? else {
        return Ok(()); // kubectl prints nothing when nothing changes
    };
    let result = if dry == DryRun::Client {
        obj.object.clone()
    } else {
        let req = Request::new(Method::PATCH, obj.path())
            .param("fieldManager", args.field_manager.clone())
            .body(STRATEGIC_PATCH, patch)
            .dry_run(dry);
        call(s, req).await?
    };
    objects::report(out, format, obj, &result, &format!("{} image updated{}", obj.type_name(), dry.suffix()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Value {
        json!({"spec": {"template": {"spec": {
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "nginx", "image": "nginx:1.14"}, {"name": "side", "image": "envoy"}]}}}})
    }

    fn pairs(v: &[&str]) -> Vec<(String, String)> {
        parse_images(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn patches_only_changed_containers() {
        assert_eq!(
            image_patch("Deployment", &deployment(), &pairs(&["nginx=nginx:1.16"])).unwrap(),
            Some(json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.16"}]}}}}))
        );
        assert_eq!(image_patch("Deployment", &deployment(), &pairs(&["nginx=nginx:1.14"])).unwrap(), None);
        assert_eq!(
            image_patch("Deployment", &deployment(), &pairs(&["*=x", "side=envoy"])).unwrap(),
            Some(json!({"spec": {"template": {"spec": {
                "initContainers": [{"name": "init", "image": "x"}],
                "containers": [{"name": "nginx", "image": "x"}]}}}}))
        );
        let pod = json!({"spec": {"containers": [{"name": "web", "image": "a"}]}});
        assert_eq!(
            image_patch("Pod", &pod, &pairs(&["web=b"])).unwrap(),
            Some(json!({"spec": {"containers": [{"name": "web", "image": "b"}]}}))
        );
    }

    #[test]
    fn errors_read_like_kubectl() {
        assert_eq!(
            image_patch("Deployment", &deployment(), &pairs(&["nope=x"])).unwrap_err().to_string(),
            "error: unable to find container named \"nope\""
        );
        assert_eq!(parse_images(&[]).unwrap_err().to_string(), "error: at least one image update is required");
        assert!(image_patch("ConfigMap", &json!({}), &pairs(&["a=b"])).is_err());
    }
}
