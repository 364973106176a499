//! kubectl's `deploymentutil` over JSON objects: revisions, the Deployment's own
//! ReplicaSets, which of them is the new one (template equal up to `pod-template-hash`)
//! and which are old. The Deployment controller (`control/src/tasks/deployment`) keeps
//! the same annotations, so `history` and `undo` read what it writes.

use serde_json::Value;

use crate::cmd::describe::fetch::{self, ListOptions};
use crate::cmd::describe::is_controlled_by;
use crate::cmd::describe::writer::format_label_selector;
use crate::error::Result;
use crate::resources::ResourceInfo;
use crate::session::Session;

/// `kubectl rollout history`'s CHANGE-CAUSE column.
pub use berth_proto::model::well_known::ANNOTATION_CHANGE_CAUSE as CHANGE_CAUSE;
/// The controller's replica annotations on ReplicaSets (never copied back by `undo`).
pub use berth_proto::model::well_known::ANNOTATION_DEPLOYMENT_DESIRED_REPLICAS as DESIRED_REPLICAS;
pub use berth_proto::model::well_known::ANNOTATION_DEPLOYMENT_MAX_REPLICAS as MAX_REPLICAS;
/// A ReplicaSet's (or Deployment's) revision number.
pub use berth_proto::model::well_known::ANNOTATION_DEPLOYMENT_REVISION as REVISION;
/// The ReplicaSet annotation listing revisions it had before a rollback re-used it.
pub use berth_proto::model::well_known::ANNOTATION_DEPLOYMENT_REVISION_HISTORY as REVISION_HISTORY;
/// The annotation `kubectl apply` keeps (never copied back by `undo`).
pub use berth_proto::model::well_known::ANNOTATION_LAST_APPLIED as LAST_APPLIED;
/// The label distinguishing a Deployment's ReplicaSets.
pub use berth_proto::model::well_known::LABEL_POD_TEMPLATE_HASH as POD_TEMPLATE_HASH;

/// `deploymentutil.Revision`: 0 without the annotation, None when it is not a number.
pub fn revision(object: &Value) -> Option<i64> {
    match object["metadata"]["annotations"][REVISION].as_str() {
        None => Some(0),
        Some(v) => v.parse().ok(),
    }
}

/// A pod template without the `pod-template-hash` label and without empty or null
/// fields, so templates compare the way apimachinery's semantic equality does.
pub fn normalized_template(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    prune(&mut t);
    t
}

fn prune(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for child in map.values_mut() {
                prune(child);
            }
            map.retain(|_, child| !is_empty(child));
        }
        Value::Array(items) => items.iter_mut().for_each(prune),
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// `EqualIgnoreHash`.
pub fn equal_ignore_hash(a: &Value, b: &Value) -> bool {
    normalized_template(a) == normalized_template(b)
}

/// Splits a Deployment's ReplicaSets into the old ones (listing order) and the new one:
/// the oldest whose template matches the Deployment's (`FindNewReplicaSet`).
pub fn split_replica_sets<'a>(deployment: &Value, replica_sets: &'a [Value]) -> (Vec<&'a Value>, Option<&'a Value>) {
    let template = &deployment["spec"]["template"];
    let mut by_age: Vec<&Value> = replica_sets.iter().collect();
    by_age.sort_by(|a, b| {
        let key = |rs: &Value| {
            (
                rs["metadata"]["creationTimestamp"].as_str().unwrap_or("").to_string(),
                rs["metadata"]["name"].as_str().unwrap_or("").to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    let new = by_age.into_iter().find(|rs| equal_ignore_hash(&rs["spec"]["template"], template));
    let new_uid = new.map(|rs| rs["metadata"]["uid"].clone());
    let old = replica_sets.iter().filter(|rs| Some(&rs["metadata"]["uid"]) != new_uid.as_ref()).collect();
    (old, new)
}

/// The ReplicaSets a Deployment controls (selected by its selector, owned by its uid).
pub async fn owned_replica_sets(session: &mut Session, deployment: &Value) -> Result<Vec<Value>> {
    let resolver = session.resolver().await?;
    let rs_info: ResourceInfo = resolver.resolve("replicasets.apps")?.clone();
    let (ns, _) = fetch::ns_name(deployment);
    let opts = ListOptions {
        label_selector: Some(format_label_selector(&deployment["spec"]["selector"])),
        field_selector: None,
    };
    let uid = deployment["metadata"]["uid"].as_str().unwrap_or("");
    let all = fetch::list(session, &rs_info, ns, &opts).await?;
    Ok(all.into_iter().filter(|rs| is_controlled_by(rs, uid)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rs(name: &str, created: &str, image: &str, hash: &str) -> Value {
        json!({"metadata": {"name": name, "uid": name, "creationTimestamp": created},
               "spec": {"template": {"metadata": {"labels": {"app": "web", "pod-template-hash": hash}},
                                      "spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[test]
    fn the_new_replica_set_is_the_oldest_with_the_current_template() {
        let d = json!({"spec": {"template": {"metadata": {"labels": {"app": "web"}, "annotations": {}},
                                             "spec": {"containers": [{"name": "c", "image": "v2", "args": []}]}}}});
        let list = vec![
            rs("a", "2024-01-01T00:00:00Z", "v1", "h1"),
            rs("c", "2024-01-03T00:00:00Z", "v2", "h3"),
            rs("b", "2024-01-02T00:00:00Z", "v2", "h2"),
        ];
        let (old, new) = split_replica_sets(&d, &list);
        assert_eq!(new.unwrap()["metadata"]["name"], "b");
        assert_eq!(old.iter().map(|r| r["metadata"]["name"].as_str().unwrap()).collect::<Vec<_>>(), ["a", "c"]);
        assert!(!equal_ignore_hash(&list[0]["spec"]["template"], &d["spec"]["template"]));
    }

    #[test]
    fn revisions_parse_like_deploymentutil() {
        assert_eq!(revision(&json!({"metadata": {}})), Some(0));
        assert_eq!(revision(&json!({"metadata": {"annotations": {REVISION: "7"}}})), Some(7));
        assert_eq!(revision(&json!({"metadata": {"annotations": {REVISION: "x"}}})), None);
    }
}
