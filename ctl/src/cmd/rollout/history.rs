//! `rollout history` and `rollout undo` for Deployments, from the revisions the
//! Deployment controller records on ReplicaSets: the history table (or one revision's pod
//! template), and kubectl's rollback (copy the chosen ReplicaSet's template, minus its
//! `pod-template-hash` label, back into the Deployment with a JSON patch).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::cmd::describe::pod::describe_pod_template;
use crate::cmd::describe::writer::{Clock, Prefix, TabWriter};

use super::deployutil::{
    self, CHANGE_CAUSE, DESIRED_REPLICAS, LAST_APPLIED, MAX_REPLICAS, POD_TEMPLATE_HASH, REVISION, REVISION_HISTORY,
};

/// Each revision's pod template (with the ReplicaSet's change-cause copied into its
/// annotations, as kubectl's history viewer does).
pub fn history(replica_sets: &[Value]) -> BTreeMap<i64, Value> {
    let mut out = BTreeMap::new();
    for rs in replica_sets {
        let Some(rev) = deployutil::revision(rs) else { continue };
        let mut template = rs["spec"]["template"].clone();
        if let Some(cause) = rs["metadata"]["annotations"][CHANGE_CAUSE].as_str().filter(|c| !c.is_empty()) {
            if let Some(meta) = template.as_object_mut().map(|t| t.entry("metadata").or_insert_with(|| json!({}))) {
                if let Some(m) = meta.as_object_mut() {
                    let annotations = m.entry("annotations").or_insert_with(|| json!({}));
                    if let Some(a) = annotations.as_object_mut() {
                        a.insert(CHANGE_CAUSE.into(), Value::String(cause.into()));
                    }
                }
            }
        }
        out.insert(rev, template);
    }
    out
}

/// The text kubectl prints after `deployment.apps/NAME ` for `rollout history`:
/// `\nREVISION  CHANGE-CAUSE\n…` or, with a revision, `with revision #N\nPod Template:…`.
pub fn view_history(replica_sets: &[Value], revision: i64) -> std::result::Result<String, String> {
    let info = history(replica_sets);
    if info.is_empty() {
        return Ok("\nNo rollout history found.".into());
    }
    if revision > 0 {
        let template = info.get(&revision).ok_or_else(|| "unable to find the specified revision".to_string())?;
        // kubectl prints the template through a plain PrefixWriter: tabs are not expanded.
        let mut w = Prefix::raw(Clock::system());
        describe_pod_template(&mut w, template);
        return Ok(format!("with revision #{revision}\n{}", w.finish()));
    }
    let mut tw = TabWriter::new();
    tw.write_str("REVISION\tCHANGE-CAUSE\n");
    for (rev, template) in &info {
        let cause =
            template["metadata"]["annotations"][CHANGE_CAUSE].as_str().filter(|c| !c.is_empty()).unwrap_or("<none>");
        tw.write_str(&format!("{rev}\t{cause}\n"));
    }
    Ok(format!("\n{}", tw.finish()))
}

/// What `rollout undo` decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Rollback {
    /// The object already runs that template: `skipped rollback (…)`.
    Skip(String),
    /// Apply this patch (a JSON patch for a Deployment, a strategic merge patch for a
    /// DaemonSet or StatefulSet), then report `rolled back`.
    Patch(Value),
}

/// kubectl's `DeploymentRollbacker.Rollback` decision (`to_revision` 0 = the previous one).
pub fn plan_rollback(
    deployment: &Value,
    replica_sets: &[Value],
    to_revision: i64,
) -> std::result::Result<Rollback, String> {
    let name = deployment["metadata"]["name"].as_str().unwrap_or("");
    if to_revision < 0 {
        return Err(revision_not_found(to_revision));
    }
    let target = find_revision(replica_sets, to_revision).ok_or_else(|| {
        if to_revision > 0 {
            revision_not_found(to_revision)
        } else {
            format!("no rollout history found for deployment {name:?}")
        }
    })?;
    if deployment["spec"]["paused"].as_bool() == Some(true) {
        return Err(
            "you cannot rollback a paused deployment; resume it first with 'berthctl rollout resume' and try again"
                .into(),
        );
    }
    let template = &target["spec"]["template"];
    if deployutil::equal_ignore_hash(template, &deployment["spec"]["template"]) {
        return Ok(Rollback::Skip(format!(
            "skipped rollback (current template already matches revision {to_revision})"
        )));
    }
    let mut template = template.clone();
    if let Some(labels) = template.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    // The Deployment keeps its own bookkeeping annotations and takes the rest (the
    // change-cause in particular) from the revision it returns to.
    const KEEP: &[&str] = &[
        LAST_APPLIED,
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    ];
    let mut annotations = Map::new();
    for key in KEEP {
        if let Some(v) = deployment["metadata"]["annotations"].get(*key) {
            annotations.insert((*key).into(), v.clone());
        }
    }
    for (k, v) in target["metadata"]["annotations"].as_object().into_iter().flatten() {
        if !KEEP.contains(&k.as_str()) {
            annotations.insert(k.clone(), v.clone());
        }
    }
    Ok(Rollback::Patch(json!([
        {"op": "replace", "path": "/spec/template", "value": template},
        // kubectl replaces; `add` also works when the Deployment has no annotations yet.
        {"op": "add", "path": "/metadata/annotations", "value": annotations},
    ])))
}

fn revision_not_found(revision: i64) -> String {
    format!("unable to find specified revision {revision} in history")
}

/// `deploymentRevision`: the ReplicaSet of `to_revision`, or the second newest for 0.
fn find_revision(replica_sets: &[Value], to_revision: i64) -> Option<&Value> {
    let mut latest: Option<(i64, &Value)> = None;
    let mut previous: Option<(i64, &Value)> = None;
    for rs in replica_sets {
        let Some(v) = deployutil::revision(rs) else { continue };
        if to_revision == 0 {
            if latest.is_none_or(|(l, _)| l < v) {
                previous = latest;
                latest = Some((v, rs));
            } else if previous.is_none_or(|(p, _)| p < v) {
                previous = Some((v, rs));
            }
        } else if to_revision == v {
            return Some(rs);
        }
    }
    if to_revision > 0 {
        None
    } else {
        previous.map(|(_, rs)| rs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(rev: &str, image: &str, cause: Option<&str>) -> Value {
        let mut annotations = json!({REVISION: rev, DESIRED_REPLICAS: "2"});
        if let Some(c) = cause {
            annotations[CHANGE_CAUSE] = json!(c);
        }
        json!({"metadata": {"name": format!("web-{rev}"), "annotations": annotations},
               "spec": {"template": {"metadata": {"labels": {"app": "web", POD_TEMPLATE_HASH: format!("h{rev}")}},
                                      "spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    fn deployment(image: &str) -> Value {
        json!({"metadata": {"name": "web", "annotations": {REVISION: "3", "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
               "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[test]
    fn history_table_lists_revisions_in_order() {
        let list = [rs("3", "v3", None), rs("1", "v1", Some("first")), rs("2", "v2", Some("kubectl set image"))];
        assert_eq!(
            view_history(&list, 0).unwrap(),
            "\nREVISION  CHANGE-CAUSE\n1         first\n2         kubectl set image\n3         <none>\n"
        );
        assert_eq!(view_history(&[], 0).unwrap(), "\nNo rollout history found.");
        assert_eq!(view_history(&list, 9).unwrap_err(), "unable to find the specified revision");
        let one = view_history(&list, 1).unwrap();
        assert!(
            one.starts_with("with revision #1\nPod Template:\n  Labels:\tapp=web\n\tpod-template-hash=h1\n"),
            "{one}"
        );
        assert!(one.contains("  Annotations:\tkubernetes.io/change-cause: first\n"), "{one}");
        assert!(one.contains("    Image:\tv1\n"), "{one}");
    }

    #[test]
    fn undo_copies_the_previous_template_back() {
        let list = [rs("1", "v1", Some("first")), rs("2", "v2", None), rs("3", "v3", None)];
        let Rollback::Patch(patch) = plan_rollback(&deployment("v3"), &list, 0).unwrap() else {
            panic!("expected a patch")
        };
        assert_eq!(patch[0]["value"]["spec"]["containers"][0]["image"], "v2");
        assert_eq!(patch[0]["value"]["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(patch[1]["value"], json!({REVISION: "3", "kubectl.kubernetes.io/last-applied-configuration": "{}"}));
        let Rollback::Patch(patch) = plan_rollback(&deployment("v3"), &list, 1).unwrap() else {
            panic!("expected a patch")
        };
        assert_eq!(patch[0]["value"]["spec"]["containers"][0]["image"], "v1");
        assert_eq!(patch[1]["value"][CHANGE_CAUSE], "first");
    }

    #[test]
    fn undo_errors_and_skips_like_kubectl() {
        let list = [rs("1", "v1", None), rs("2", "v2", None)];
        assert_eq!(
            plan_rollback(&deployment("v2"), &list, 9).unwrap_err(),
            "unable to find specified revision 9 in history"
        );
        assert_eq!(
            plan_rollback(&deployment("v2"), &list, 2).unwrap(),
            Rollback::Skip("skipped rollback (current template already matches revision 2)".into())
        );
        assert_eq!(
            plan_rollback(&deployment("v1"), &list[..1], 0).unwrap_err(),
            "no rollout history found for deployment \"web\""
        );
        let mut paused = deployment("v2");
        paused["spec"]["paused"] = json!(true);
        assert!(plan_rollback(&paused, &list, 1).unwrap_err().starts_with("you cannot rollback a paused deployment"));
    }
}
