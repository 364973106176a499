//! `rollout history` and `rollout undo` for DaemonSets and StatefulSets, from their
//! ControllerRevisions (kubectl's `DaemonSetHistoryViewer` / `StatefulSetHistoryViewer`
//! and their rollbackers). The controllers (`control/src/tasks/revisions.rs`) store each
//! template as the revision's `data`: `{"spec":{"template":{…,"$patch":"replace"}}}`, a
//! strategic merge patch that `undo` sends back to the object unchanged.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::cmd::describe::fetch::{self, ListOptions};
use crate::cmd::describe::is_controlled_by;
use crate::cmd::describe::pod::describe_pod_template;
use crate::cmd::describe::writer::{format_label_selector, Clock, Prefix, TabWriter};
use crate::error::Result;
use crate::resources::ResourceInfo;
use crate::session::Session;

use super::deployutil::{self, CHANGE_CAUSE};
use super::history::Rollback;

/// Whether `rollout history` / `undo` read ControllerRevisions for this kind.
pub fn keeps_revisions(info: &ResourceInfo) -> bool {
    info.group == "apps" && matches!(info.kind.as_str(), "DaemonSet" | "StatefulSet")
}

/// The pod template a revision's data holds (`None`: not such a patch).
pub fn template_of(revision: &Value) -> Option<Value> {
    let mut template = revision["data"]["spec"]["template"].clone();
    template.as_object_mut()?.remove("$patch");
    Some(template)
}

fn number(revision: &Value) -> Option<i64> {
    revision["revision"].as_i64()
}

/// Revisions by number (kubectl assumes numbers do not repeat; the last one listed wins).
fn by_number(revisions: &[Value]) -> BTreeMap<i64, &Value> {
    revisions.iter().filter_map(|r| Some((number(r)?, r))).collect()
}

/// The text kubectl prints after `daemonset.apps/NAME ` for `rollout history`
/// (`printHistory`): the table, or with a revision its pod template.
pub fn view_history(revisions: &[Value], revision: i64) -> std::result::Result<String, String> {
    let info = by_number(revisions);
    if info.is_empty() {
        return Ok("\nNo rollout history found.".into());
    }
    if revision > 0 {
        let found = info.get(&revision).ok_or_else(|| "unable to find the specified revision".to_string())?;
        let name = found["metadata"]["name"].as_str().unwrap_or_default();
        let template = template_of(found).ok_or_else(|| format!("unable to parse history {name}"))?;
        let mut w = Prefix::raw(Clock::system());
        describe_pod_template(&mut w, &template);
        return Ok(format!("with revision #{revision}\n{}", w.finish()));
    }
    let mut tw = TabWriter::new();
    tw.write_str("REVISION\tCHANGE-CAUSE\n");
    for (number, r) in &info {
        let cause = r["metadata"]["annotations"][CHANGE_CAUSE].as_str().filter(|c| !c.is_empty()).unwrap_or("<none>");
        tw.write_str(&format!("{number}\t{cause}\n"));
    }
    Ok(format!("\n{}", tw.finish()))
}

/// kubectl's `DaemonSetRollbacker` / `StatefulSetRollbacker` decision (`to_revision` 0 =
/// the previous one): skip when the object already has that template, else send the
/// revision's data as a strategic merge patch.
pub fn plan_rollback(object: &Value, revisions: &[Value], to_revision: i64) -> std::result::Result<Rollback, String> {
    if to_revision < 0 {
        return Err(revision_not_found(to_revision));
    }
    if to_revision == 0 && revisions.len() <= 1 {
        return Err("no last revision to roll back to".into());
    }
    let info = by_number(revisions);
    let target = if to_revision == 0 {
        // The second highest number: the revision before the current one.
        info.values().rev().nth(1).copied()
    } else {
        info.get(&to_revision).copied()
    };
    let target = target.ok_or_else(|| revision_not_found(to_revision))?;
    let template = template_of(target).ok_or_else(|| revision_not_found(to_revision))?;
    if deployutil::normalized_template(&template) == deployutil::normalized_template(&object["spec"]["template"]) {
        let shown = number(target).unwrap_or(to_revision);
        return Ok(Rollback::Skip(format!("skipped rollback (current template already matches revision {shown})")));
    }
    Ok(Rollback::Patch(target["data"].clone()))
}

fn revision_not_found(revision: i64) -> String {
    format!("unable to find specified revision {revision} in history")
}

/// The ControllerRevisions `object` controls (selected by its selector, owned by its uid:
/// kubectl's `controlledHistory`).
pub async fn owned_revisions(session: &mut Session, object: &Value) -> Result<Vec<Value>> {
    let resolver = session.resolver().await?;
    let info: ResourceInfo = resolver.resolve("controllerrevisions.apps")?.clone();
    let (ns, _) = fetch::ns_name(object);
    let opts =
        ListOptions { label_selector: Some(format_label_selector(&object["spec"]["selector"])), field_selector: None };
    let uid = object["metadata"]["uid"].as_str().unwrap_or("");
    let all = fetch::list(session, &info, ns, &opts).await?;
    Ok(all.into_iter().filter(|r| is_controlled_by(r, uid)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(image: &str) -> Value {
        json!({"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "c", "image": image}]}})
    }

    fn revision(number: i64, image: &str, cause: Option<&str>) -> Value {
        let mut data = json!({"spec": {"template": template(image)}});
        data["spec"]["template"]["$patch"] = json!("replace");
        data["spec"]["template"]["metadata"]["creationTimestamp"] = Value::Null;
        let mut r = json!({"metadata": {"name": format!("agent-h{number}")}, "revision": number, "data": data});
        if let Some(c) = cause {
            r["metadata"]["annotations"] = json!({CHANGE_CAUSE: c});
        }
        r
    }

    fn object(image: &str) -> Value {
        json!({"metadata": {"name": "agent"}, "spec": {"template": template(image)}})
    }

    #[test]
    fn history_lists_revisions_with_their_change_cause() {
        let list = [revision(3, "v3", None), revision(1, "v1", Some("first")), revision(2, "v2", Some("second"))];
        assert_eq!(
            view_history(&list, 0).unwrap(),
            "\nREVISION  CHANGE-CAUSE\n1         first\n2         second\n3         <none>\n"
        );
        assert_eq!(view_history(&[], 0).unwrap(), "\nNo rollout history found.");
        assert_eq!(view_history(&list, 9).unwrap_err(), "unable to find the specified revision");
        let one = view_history(&list, 1).unwrap();
        assert!(one.starts_with("with revision #1\nPod Template:\n  Labels:\tapp=agent\n"), "{one}");
        assert!(one.contains("    Image:\tv1\n"), "{one}");
        let mut broken = revision(4, "v4", None);
        broken["data"] = json!("x");
        assert_eq!(view_history(&[broken], 4).unwrap_err(), "unable to parse history agent-h4");
    }

    #[test]
    fn undo_sends_the_revision_data_back() {
        let list = [revision(1, "v1", None), revision(2, "v2", None), revision(3, "v3", None)];
        let Rollback::Patch(patch) = plan_rollback(&object("v3"), &list, 0).unwrap() else { panic!("a patch") };
        assert_eq!(patch["spec"]["template"]["spec"]["containers"][0]["image"], "v2");
        assert_eq!(patch["spec"]["template"]["$patch"], "replace");
        let Rollback::Patch(patch) = plan_rollback(&object("v3"), &list, 1).unwrap() else { panic!("a patch") };
        assert_eq!(patch, list[0]["data"]);
    }

    #[test]
    fn undo_errors_and_skips_like_kubectl() {
        let list = [revision(1, "v1", None), revision(2, "v2", None)];
        assert_eq!(
            plan_rollback(&object("v2"), &list, 2).unwrap(),
            Rollback::Skip("skipped rollback (current template already matches revision 2)".into())
        );
        assert_eq!(
            plan_rollback(&object("v2"), &list, 7).unwrap_err(),
            "unable to find specified revision 7 in history"
        );
        assert_eq!(
            plan_rollback(&object("v2"), &list, -1).unwrap_err(),
            "unable to find specified revision -1 in history"
        );
        assert_eq!(plan_rollback(&object("v2"), &list[..1], 0).unwrap_err(), "no last revision to roll back to");
    }
}
