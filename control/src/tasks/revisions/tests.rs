//! Unit and property tests of the history decisions: the data kubectl reads, revision
//! numbering and reuse, claiming, and trimming.

use super::*;
use proptest::prelude::*;

fn meta() -> ObjectMeta {
    serde_json::from_value(json!({"name": "agent", "namespace": "default", "uid": "ds-uid",
        "annotations": {"kubernetes.io/change-cause": "kubectl set image"}}))
    .unwrap()
}

fn selector() -> LabelSelector {
    serde_json::from_value(json!({"matchLabels": {"app": "agent"}})).unwrap()
}

fn template(image: &str) -> PodTemplateSpec {
    serde_json::from_value(json!({"metadata": {"labels": {"app": "agent", "tier": "node"}},
        "spec": {"containers": [{"name": "c", "image": image}]}}))
    .unwrap()
}

/// A stored revision of `image` numbered `number`, as the controller would have made it
/// (uid and resourceVersion as the API gives them).
fn stored(owner_meta: &ObjectMeta, image: &str, number: i64) -> ControllerRevision {
    let (t, hash) = (template(image), format!("h-{image}"));
    let owner = Owner { kind: "DaemonSet", meta: owner_meta, selector: None, template: &t, hash: &hash };
    let mut r = new_revision(&owner, number);
    r.metadata.uid = Some(format!("uid-{image}"));
    r.metadata.resource_version = Some(format!("{number}00"));
    r
}

fn plan_for<'a>(m: &ObjectMeta, image: &str, candidates: &[&'a ControllerRevision]) -> HistoryPlan<'a> {
    let (t, sel, hash) = (template(image), selector(), format!("h-{image}"));
    let owner = Owner { kind: "DaemonSet", meta: m, selector: Some(&sel), template: &t, hash: &hash };
    plan_history(&owner, candidates)
}

fn names(old: &[&ControllerRevision]) -> Vec<String> {
    old.iter().map(|r| r.metadata.name.clone().unwrap()).collect()
}

#[test]
fn the_data_is_the_patch_kubectl_applies_to_roll_back() {
    let t = template("nginx:1");
    let data = revision_data(&t);
    assert_eq!(
        data,
        json!({"spec": {"template": {"$patch": "replace",
            "metadata": {"creationTimestamp": null, "labels": {"app": "agent", "tier": "node"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1", "resources": {}}]}}}})
    );
    // Byte for byte what Go writes (kubectl compares the bytes): keys sorted, compact.
    assert_eq!(
        serde_json::to_string(&data).unwrap(),
        r#"{"spec":{"template":{"$patch":"replace","metadata":{"creationTimestamp":null,"labels":{"app":"agent","tier":"node"}},"spec":{"containers":[{"image":"nginx:1","name":"c","resources":{}}]}}}}"#
    );
    let with_init: PodTemplateSpec = serde_json::from_value(json!({"spec": {
        "initContainers": [{"name": "i", "resources": {"limits": {"cpu": "1"}}}], "containers": []}}))
    .unwrap();
    let init_data = revision_data(&with_init);
    assert_eq!(
        init_data["spec"]["template"]["spec"]["initContainers"][0]["resources"],
        json!({"limits": {"cpu": "1"}})
    );
    assert_eq!(init_data["spec"]["template"]["metadata"], json!({"creationTimestamp": null}));
    let r = ControllerRevision { data: Some(RawExtension(init_data)), ..Default::default() };
    let mut expected = with_init.clone();
    expected.metadata = Some(ObjectMeta::default());
    assert_eq!(template_of(&r), Some(expected), "Go's zero values are dropped again, set resources kept");
    let r = ControllerRevision { data: Some(RawExtension(data)), ..Default::default() };
    assert_eq!(template_of(&r), Some(t));
    // Data that is no such patch has no template (and never matches one).
    for odd in [json!(null), json!("x"), json!({"spec": 1}), json!({"spec": {"template": [1]}})] {
        let r = ControllerRevision { data: Some(RawExtension(odd.clone())), ..Default::default() };
        assert_eq!(template_of(&r), None, "{odd}");
    }
    assert_eq!(template_of(&ControllerRevision::default()), None);
}

#[test]
fn a_new_revision_is_named_labelled_and_owned_like_kubernetes() {
    let m = meta();
    let r = stored(&m, "nginx:1", 4);
    assert_eq!(r.metadata.name.as_deref(), Some("agent-h-nginx:1"));
    assert_eq!(r.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(r.revision, 4);
    assert_eq!(
        r.metadata.labels,
        Some(BTreeMap::from([
            ("app".to_string(), "agent".to_string()),
            ("controller-revision-hash".to_string(), "h-nginx:1".to_string()),
            ("tier".to_string(), "node".to_string()),
        ]))
    );
    assert_eq!(hash_label(&r), Some("h-nginx:1"));
    let owner = &r.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("DaemonSet", "ds-uid", Some(true)));
    assert_eq!(r.metadata.annotations.as_ref().unwrap()["kubernetes.io/change-cause"], "kubectl set image");
    // Long owner names are cut so the name stays a valid DNS subdomain.
    let long = "a".repeat(300);
    assert_eq!(revision_name(&long, "xyz").len(), MAX_PREFIX + 4);
    assert_eq!(revision_name("web", "xyz"), "web-xyz");
}

#[test]
fn a_new_template_gets_the_next_number() {
    let m = meta();
    let plan = plan_for(&m, "nginx:1", &[]);
    let Current::Create(r) = &plan.current else { panic!("{:?}", plan.current) };
    assert_eq!(r.revision, 1);
    assert!(plan.old.is_empty());

    let (r1, r2) = (stored(&m, "nginx:1", 1), stored(&m, "nginx:2", 2));
    let plan = plan_for(&m, "nginx:3", &[&r2, &r1]);
    let Current::Create(r) = &plan.current else { panic!("{:?}", plan.current) };
    assert_eq!((r.revision, r.metadata.name.as_deref()), (3, Some("agent-h-nginx:3")));
    assert_eq!(names(&plan.old), ["agent-h-nginx:2", "agent-h-nginx:1"]);
}

#[test]
fn an_unchanged_template_keeps_its_revision() {
    let m = meta();
    let (r1, r2) = (stored(&m, "nginx:1", 1), stored(&m, "nginx:2", 2));
    let plan = plan_for(&m, "nginx:2", &[&r1, &r2]);
    assert_eq!(
        plan.current,
        Current::Existing { revision: RevisionRef::of(&r2), hash: Some("h-nginx:2".into()), bump_to: None }
    );
    assert_eq!(names(&plan.old), ["agent-h-nginx:1"]);
    assert!(plan.adopt.is_empty() && plan.release.is_empty());
}

#[test]
fn a_rollback_reuses_the_old_revision_as_the_newest() {
    let m = meta();
    let (r1, r2, r3) = (stored(&m, "nginx:1", 1), stored(&m, "nginx:2", 2), stored(&m, "nginx:3", 3));
    let plan = plan_for(&m, "nginx:1", &[&r1, &r2, &r3]);
    assert_eq!(
        plan.current,
        Current::Existing { revision: RevisionRef::of(&r1), hash: Some("h-nginx:1".into()), bump_to: Some(4) }
    );
    assert_eq!(names(&plan.old), ["agent-h-nginx:2", "agent-h-nginx:3"]);
    // Revision data that is not a template never matches, but its number counts.
    let mut odd = stored(&m, "nginx:9", 7);
    odd.data = Some(RawExtension(json!("garbage")));
    let plan = plan_for(&m, "nginx:1", &[&r1, &odd]);
    let Current::Existing { bump_to, .. } = plan.current else { panic!() };
    assert_eq!(bump_to, Some(8));
}

#[test]
fn of_several_revisions_of_one_template_the_highest_is_current() {
    let m = meta();
    let r1 = stored(&m, "nginx:1", 1);
    let mut adopted = stored(&m, "nginx:1", 5);
    adopted.metadata.name = Some("agent-other".into());
    adopted.metadata.labels.as_mut().unwrap().remove("controller-revision-hash");
    let r2 = stored(&m, "nginx:2", 3);
    let plan = plan_for(&m, "nginx:1", &[&r1, &adopted, &r2]);
    assert_eq!(plan.current, Current::Existing { revision: RevisionRef::of(&adopted), hash: None, bump_to: None });
    assert_eq!(names(&plan.old), ["agent-h-nginx:1", "agent-h-nginx:2"]);
    // Equal numbers: the one named as this controller names it.
    adopted.revision = 1;
    let plan = plan_for(&m, "nginx:1", &[&adopted, &r1]);
    let Current::Existing { revision, bump_to, .. } = plan.current else { panic!() };
    assert_eq!((revision.name.as_str(), bump_to), ("agent-h-nginx:1", Some(2)));
}

#[test]
fn matching_orphans_are_adopted_and_strays_released() {
    let m = meta();
    let mut orphan = stored(&m, "nginx:1", 1);
    orphan.metadata.owner_references = None;
    let mut foreign = stored(&m, "nginx:2", 2);
    foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "other".into();
    let mut stray = stored(&m, "nginx:3", 3);
    stray.metadata.labels = Some(BTreeMap::from([("app".to_string(), "else".to_string())]));
    let mut unrelated = stored(&m, "nginx:4", 4);
    unrelated.metadata.owner_references = None;
    unrelated.metadata.labels = None;
    let plan = plan_for(&m, "nginx:1", &[&orphan, &foreign, &stray, &unrelated]);
    assert_eq!(plan.adopt.len(), 1);
    assert_eq!(plan.adopt[0].name, "agent-h-nginx:1");
    assert_eq!(plan.adopt[0].resource_version.as_deref(), Some("100"));
    assert_eq!(plan.adopt[0].owner_references[0].uid, "ds-uid");
    assert_eq!(plan.release.len(), 1);
    assert_eq!(plan.release[0].name, "agent-h-nginx:3");
    assert!(plan.release[0].owner_references.is_empty());
    // The adopted orphan holds the template; the others are not part of the history.
    assert_eq!(
        plan.current,
        Current::Existing { revision: RevisionRef::of(&orphan), hash: Some("h-nginx:1".into()), bump_to: None }
    );
    assert!(plan.old.is_empty());
}

#[test]
fn trimming_keeps_the_newest_and_the_live() {
    let m = meta();
    let old: Vec<ControllerRevision> = (1..=5).map(|n| stored(&m, &format!("v{n}"), n)).collect();
    let refs: Vec<&ControllerRevision> = old.iter().rev().collect();
    let gone = |limit, rule, live: &[i64]| -> Vec<String> {
        expired(&refs, limit, rule, |r| live.contains(&r.revision)).into_iter().map(|r| r.name).collect()
    };
    assert_eq!(gone(Some(3), Limit::CountingLive, &[]), ["agent-h-v1", "agent-h-v2"], "oldest first");
    assert_eq!(gone(Some(5), Limit::CountingLive, &[]), Vec::<String>::new());
    assert_eq!(gone(None, Limit::CountingLive, &[]), Vec::<String>::new(), "10 by default");
    // A live revision is skipped; with the DaemonSet's rule it still counts.
    assert_eq!(gone(Some(3), Limit::CountingLive, &[1]), ["agent-h-v2", "agent-h-v3"]);
    assert_eq!(gone(Some(0), Limit::CountingLive, &[1, 2]), ["agent-h-v3", "agent-h-v4", "agent-h-v5"]);
    // The StatefulSet's rule keeps `limit` besides the live ones.
    assert_eq!(gone(Some(3), Limit::BesidesLive, &[1]), ["agent-h-v2"]);
    assert_eq!(gone(Some(-4), Limit::BesidesLive, &[5]), ["agent-h-v1", "agent-h-v2", "agent-h-v3", "agent-h-v4"]);
    let deleted = expired(&refs, Some(4), Limit::CountingLive, |_| false);
    assert_eq!(deleted, vec![RevisionRef::of(&old[0])], "carries uid and resourceVersion");
}

proptest! {
    /// Whatever sequence of templates a DaemonSet goes through (changes, rollbacks,
    /// repeats), with the history trimmed after each step: there is one revision per
    /// template, the current template's revision has the single highest number, numbers
    /// never repeat, and at most `limit` old revisions remain.
    #[test]
    fn history_follows_any_sequence_of_templates(
        images in proptest::collection::vec(0u8..5, 1..20),
        limit in 0i32..4,
    ) {
        let m = meta();
        let mut store: Vec<ControllerRevision> = Vec::new();
        for image in images {
            let image = format!("v{image}");
            let refs: Vec<&ControllerRevision> = store.iter().collect();
            let plan = plan_for(&m, &image, &refs);
            let (current, expired) = {
                let expired = expired(&plan.old, Some(limit), Limit::CountingLive, |_| false);
                (plan.current, expired)
            };
            match current {
                Current::Create(r) => store.push(*r),
                Current::Existing { revision, bump_to, .. } => {
                    if let Some(n) = bump_to {
                        store.iter_mut().find(|r| r.metadata.name.as_ref() == Some(&revision.name)).unwrap().revision = n;
                    }
                }
            }
            store.retain(|r| !expired.iter().any(|e| Some(&e.name) == r.metadata.name.as_ref()));
            let current = store.iter().find(|r| template_of(r) == Some(template(&image))).unwrap();
            prop_assert!(store.iter().all(|r| std::ptr::eq(r, current) || r.revision < current.revision));
            let mut numbers: Vec<i64> = store.iter().map(|r| r.revision).collect();
            numbers.sort();
            numbers.dedup();
            prop_assert_eq!(numbers.len(), store.len());
            let mut templates: Vec<String> = store.iter().map(|r| r.metadata.name.clone().unwrap()).collect();
            templates.sort();
            templates.dedup();
            prop_assert_eq!(templates.len(), store.len());
            prop_assert!(store.len() <= limit as usize + 1);
        }
    }
}
