//! `berthctl autoscale`: creates an autoscaling/v2 HorizontalPodAutoscaler for a
//! Deployment, ReplicaSet, StatefulSet or ReplicationController, as `kubectl autoscale`
//! does (`--max` required, `--min`, `--cpu-percent`, `--name`), printing
//! `horizontalpodautoscaler.autoscaling/web autoscaled`. kubectl itself sends this object
//! as protobuf, which Berth does not decode: this command is the JSON equivalent.

use http::Method;
use serde_json::{json, Value};

use crate::cmd::objects::{self, call, finish, DryRun, Obj, PickWriteFlags, Request};
use crate::error::{CtlError, Result};
use crate::session::Session;
use crate::Out;

/// Kinds `kubectl autoscale` accepts.
const SCALABLE: &[&str] = &["Deployment", "ReplicaSet", "StatefulSet", "ReplicationController"];

/// Flags of `autoscale`.
#[derive(Debug, clap::Args)]
pub struct AutoscaleArgs {
    /// TYPE NAME or TYPE/NAME.
    pub resources: Vec<String>,
    /// The upper limit for the number of pods that can be set by the autoscaler. Required.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub max: i32,
    /// The lower limit for the number of pods (-1: the server's default, 1).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub min: i32,
    /// The target average CPU utilization (percent of request) over all pods (-1: the server's default, 80).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub cpu_percent: i32,
    /// The name for the newly created object (default: the target's name).
    #[arg(long, default_value = "")]
    pub name: String,
    /// Which objects, -o and --dry-run.
    #[command(flatten)]
    pub write: PickWriteFlags,
    /// Name of the manager used to track field ownership.
    #[arg(long, default_value = "kubectl-autoscale")]
    pub field_manager: String,
}

/// kubectl's flag checks.
fn validate(min: i32, max: i32) -> Result<()> {
    if max < 1 {
        return Err(CtlError::usage(format!("--max=MAXPODS is required and must be at least 1, max: {max}")));
    }
    if max < min {
        return Err(CtlError::usage(format!(
            "--max=MAXPODS must be larger or equal to --min=MINPODS, max: {max}, min: {min}"
        )));
    }
    Ok(())
}

/// The HPA kubectl would create for the target (`api_version`, `kind`, `target`).
pub fn hpa_for(api_version: &str, kind: &str, target: &str, name: &str, min: i32, max: i32, cpu: i32) -> Value {
    let mut hpa = json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": if name.is_empty() { target } else { name }},
        "spec": {
            "scaleTargetRef": {"apiVersion": api_version, "kind": kind, "name": target},
            "maxReplicas": max,
        },
    });
    if min > 0 {
        hpa["spec"]["minReplicas"] = json!(min);
    }
    if cpu >= 0 {
        hpa["spec"]["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": cpu}}}]);
    }
    hpa
}

/// Runs `autoscale`.
pub async fn run(s: &mut Session, args: AutoscaleArgs, out: &mut Out) -> Result<()> {
    validate(args.min, args.max)?;
    let (dry, format) = args.write.modes()?;
    let sel = args.write.selection(args.resources.clone());
    let found = objects::select(s, &sel, true).await?;
    let hpa_info = s.resolver().await?.resolve("horizontalpodautoscalers.autoscaling")?.clone();
    let mut errors = found.errors;
    for obj in found.objects {
        if !SCALABLE.contains(&obj.info.kind.as_str()) {
            errors.push(CtlError::usage(format!("cannot autoscale a {}: {}", obj.info.kind, obj.type_name())));
            continue;
        }
        let hpa = hpa_for(
            &obj.info.api_version(),
            &obj.info.kind,
            &obj.name,
            &args.name,
            args.min,
            args.max,
            args.cpu_percent,
        );
        let created = Obj {
            info: hpa_info.clone(),
            namespace: obj.namespace.clone(),
            name: hpa["metadata"]["name"].as_str().unwrap_or_default().to_string(),
            object: hpa.clone(),
            source: None,
        };
        let result = if dry == DryRun::Client {
            Ok(hpa)
        } else {
            let path = hpa_info.url_path(obj.namespace.as_deref(), None);
            let req = Request::new(Method::POST, path)
                .body("application/json", hpa)
                .param("fieldManager", &args.field_manager);
            call(s, req.dry_run(dry)).await
        };
        match result {
            Ok(v) => {
                let message = format!("{} autoscaled{}", created.type_name(), dry.suffix());
                objects::report(out, format.as_ref(), &created, &v, &message)?;
            }
            Err(e) => errors.push(e),
        }
    }
    finish(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_kubectls_hpa() {
        let hpa = hpa_for("apps/v1", "Deployment", "web", "", 1, 5, 50);
        assert_eq!(
            hpa,
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "maxReplicas": 5, "minReplicas": 1,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 50}}}]}})
        );
        let bare = hpa_for("apps/v1", "StatefulSet", "db", "db-hpa", -1, 3, -1);
        assert_eq!(bare["metadata"]["name"], "db-hpa");
        assert!(bare["spec"].get("minReplicas").is_none() && bare["spec"].get("metrics").is_none());
    }

    #[test]
    fn flag_errors_read_like_kubectl() {
        assert_eq!(
            validate(-1, -1).unwrap_err().to_string(),
            "error: --max=MAXPODS is required and must be at least 1, max: -1"
        );
        assert_eq!(
            validate(4, 2).unwrap_err().to_string(),
            "error: --max=MAXPODS must be larger or equal to --min=MINPODS, max: 2, min: 4"
        );
        assert!(validate(1, 5).is_ok());
    }
}
