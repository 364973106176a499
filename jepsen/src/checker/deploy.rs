//! The deploy checker: Deployment writes through the Kubernetes API against the state the
//! cluster converged to after healing.
//!
//! **Invariant.** After the final heal every Deployment converges, within the harness's
//! bound, to the spec of its last acknowledged write, with exactly `replicas` Ready pods of
//! that template and no other pods; no acknowledged write is lost; resourceVersions of each
//! object strictly increase across acknowledged writes. Precisely:
//!
//! * `not-converged`: the `converge` op failed — the bound passed before every Deployment
//!   ran exactly `replicas` Ready pods of its current template and nothing else.
//! * The *candidates* of a Deployment are its indeterminate writes (they may take effect at
//!   any time) and every acknowledged write that no other acknowledged write to it follows
//!   in real time (invoked after it completed). The converged state must be one a candidate
//!   left: present with a create/scale/update candidate's `write_id` annotation, replicas
//!   and version, or absent after a delete candidate (or an indeterminate write, which may
//!   have been a patch of nothing). Otherwise `lost-write` (the state is an older write's,
//!   or the object is missing/present against every candidate), `unexpected-write` (the
//!   state comes from a failed or never-made write) or `torn-write` (the write's id with
//!   another spec).
//! * `rv-order`: an acknowledged write that completed before another to the same object was
//!   invoked returned a resourceVersion not below the later one's; `rv-reused`: two
//!   acknowledged writes to one object returned the same resourceVersion (every write
//!   changes the object, so each must get its own). Deletes return no revision of their
//!   own and are left out.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{completed_ops, Anomaly, CheckResult, Completed};
use crate::history::{Call, DeployAction, DeploymentView, History, OpType};

const CHECKER: &str = "deploy";

/// One Deployment write as the checker needs it.
#[derive(Debug, Clone, Copy)]
struct Write<'a> {
    op: Completed<'a>,
    action: DeployAction,
    replicas: i32,
    version: u32,
    write_id: u64,
    resource_version: Option<u64>,
}

impl Write<'_> {
    fn acknowledged(&self) -> bool {
        self.op.outcome() == OpType::Ok
    }

    fn indeterminate(&self) -> bool {
        self.op.outcome() == OpType::Info
    }

    /// The index after which this write is known to have completed (none if it never did).
    fn completed_at(&self) -> Option<u64> {
        self.op.completion.map(|c| c.index)
    }
}

/// Decides a history; see the module doc for the invariant.
pub fn check(history: &History) -> CheckResult {
    let mut by_name: BTreeMap<&str, Vec<Write<'_>>> = BTreeMap::new();
    let mut converge: Option<Completed<'_>> = None;
    for op in completed_ops(history) {
        match op.call() {
            Call::DeploymentWrite { name, action, replicas, version, write_id, resource_version } => {
                by_name.entry(name.as_str()).or_default().push(Write {
                    op,
                    action: *action,
                    replicas: *replicas,
                    version: *version,
                    write_id: *write_id,
                    resource_version: *resource_version,
                });
            }
            Call::Converge { .. } => converge = Some(op),
            _ => {}
        }
    }
    let mut anomalies = vec![];
    for (name, writes) in &by_name {
        anomalies.extend(resource_versions(name, writes));
    }
    let mut stats = BTreeMap::from([
        ("writes_ok".to_string(), by_name.values().flatten().filter(|w| w.acknowledged()).count() as u64),
        ("writes_info".to_string(), by_name.values().flatten().filter(|w| w.indeterminate()).count() as u64),
    ]);
    let final_views = match converge {
        None => {
            anomalies.push(Anomaly::new("no-converge", "the harness recorded no convergence read", vec![]));
            None
        }
        Some(c) => {
            let Call::Converge { seconds, deployments, orphan_pods } = c.call() else { unreachable!() };
            match c.outcome() {
                OpType::Ok => {
                    if let Some(s) = seconds {
                        stats.insert("convergence_ms".to_string(), (s * 1000.0).round() as u64);
                    }
                }
                _ => anomalies.push(Anomaly::new(
                    "not-converged",
                    format!(
                        "{}; last read: {}{}",
                        c.completion.and_then(|o| o.error.clone()).unwrap_or_else(|| "no completion".into()),
                        deployments.as_deref().map(describe).unwrap_or_else(|| "none".into()),
                        if *orphan_pods > 0 {
                            format!("; {orphan_pods} pod(s) of deleted Deployments")
                        } else {
                            String::new()
                        }
                    ),
                    c.indices(),
                )),
            }
            deployments.as_ref().map(|d| (d, c))
        }
    };
    match final_views {
        Some((views, c)) => {
            let at = c.completion.map_or(c.invoke.index, |o| o.index);
            let present: HashMap<&str, &DeploymentView> = views.iter().map(|v| (v.name.as_str(), v)).collect();
            let names: BTreeSet<&str> = by_name.keys().copied().chain(present.keys().copied()).collect();
            for name in names {
                let writes = by_name.get(name).map(Vec::as_slice).unwrap_or(&[]);
                anomalies.extend(final_state(name, writes, present.get(name).copied(), at));
            }
            stats.insert("deployments".to_string(), views.len() as u64);
        }
        None if converge.is_some() => {
            anomalies.push(Anomaly::new("no-converge", "the convergence read saw nothing", vec![]));
        }
        None => {}
    }
    CheckResult::from_anomalies(CHECKER, anomalies, &["no-converge"], stats)
}

fn describe(views: &[DeploymentView]) -> String {
    views
        .iter()
        .map(|v| {
            format!(
                "{} wants {}×v{}, has {} ready current + {} other",
                v.name, v.replicas, v.version, v.ready_current, v.other_pods
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// resourceVersions of acknowledged writes to one object: increasing in real time, unique.
fn resource_versions(name: &str, writes: &[Write<'_>]) -> Vec<Anomaly> {
    let acked: Vec<(&Write<'_>, u64)> = writes
        .iter()
        .filter(|w| w.acknowledged() && w.action != DeployAction::Delete)
        .filter_map(|w| Some((w, w.resource_version?)))
        .collect();
    let mut anomalies = vec![];
    let mut seen: HashMap<u64, &Write<'_>> = HashMap::new();
    for (w, rv) in &acked {
        if let Some(other) = seen.insert(*rv, w) {
            anomalies.push(Anomaly::new(
                "rv-reused",
                format!("{name}: writes {} and {} both returned resourceVersion {rv}", other.write_id, w.write_id),
                [other.op.indices(), w.op.indices()].concat(),
            ));
        }
    }
    for (earlier, rv1) in &acked {
        let Some(done) = earlier.completed_at() else { continue };
        for (later, rv2) in &acked {
            if later.op.invoke.index > done && rv2 <= rv1 {
                anomalies.push(Anomaly::new(
                    "rv-order",
                    format!(
                        "{name}: write {} returned resourceVersion {rv1} before write {} was invoked, which returned {rv2}",
                        earlier.write_id, later.write_id
                    ),
                    [earlier.op.indices(), later.op.indices()].concat(),
                ));
            }
        }
    }
    anomalies
}

/// The converged state of one Deployment against its candidate writes.
fn final_state(name: &str, writes: &[Write<'_>], seen: Option<&DeploymentView>, at: u64) -> Vec<Anomaly> {
    let superseded = |w: &Write<'_>| {
        w.completed_at()
            .is_some_and(|done| writes.iter().any(|later| later.acknowledged() && later.op.invoke.index > done))
    };
    let candidates: Vec<&Write<'_>> =
        writes.iter().filter(|w| w.indeterminate() || (w.acknowledged() && !superseded(w))).collect();
    let ids = |ws: &[&Write<'_>]| ws.iter().map(|w| w.write_id.to_string()).collect::<Vec<_>>().join(", ");
    let indices = |ws: &[&Write<'_>]| ws.iter().flat_map(|w| w.op.indices()).chain([at]).collect::<Vec<_>>();
    match seen {
        None => {
            let may_be_absent = candidates.iter().any(|w| w.action == DeployAction::Delete || w.indeterminate())
                || !writes.iter().any(|w| w.acknowledged());
            if may_be_absent {
                return vec![];
            }
            vec![Anomaly::new(
                "lost-write",
                format!(
                    "{name} is missing after convergence (#{at}), but its last acknowledged write(s) {} left it present",
                    ids(&candidates)
                ),
                indices(&candidates),
            )]
        }
        Some(view) => {
            let Some(source) = writes.iter().find(|w| w.write_id == view.write_id) else {
                return vec![Anomaly::new(
                    "unexpected-write",
                    format!("{name} converged (#{at}) to write {}, which no client made", view.write_id),
                    vec![at],
                )];
            };
            if source.op.outcome() == OpType::Fail {
                return vec![Anomaly::new(
                    "unexpected-write",
                    format!("{name} converged (#{at}) to write {}, which failed", view.write_id),
                    [source.op.indices(), vec![at]].concat(),
                )];
            }
            if !candidates.iter().any(|c| c.write_id == view.write_id) || source.action == DeployAction::Delete {
                return vec![Anomaly::new(
                    "lost-write",
                    format!(
                        "{name} converged (#{at}) to write {}, superseded by acknowledged write(s); expected one of {}",
                        view.write_id,
                        ids(&candidates)
                    ),
                    [source.op.indices(), indices(&candidates)].concat(),
                )];
            }
            if (source.replicas, source.version) != (view.replicas, view.version) {
                return vec![Anomaly::new(
                    "torn-write",
                    format!(
                        "{name} carries write {} but has {}×v{}; that write set {}×v{}",
                        view.write_id, view.replicas, view.version, source.replicas, source.version
                    ),
                    [source.op.indices(), vec![at]].concat(),
                )];
            }
            vec![]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::*;
    use crate::checker::Verdict;

    fn write(name: &str, action: DeployAction, replicas: i32, version: u32, id: u64, rv: Option<u64>) -> Call {
        Call::DeploymentWrite { name: name.into(), action, replicas, version, write_id: id, resource_version: rv }
    }

    fn create(id: u64, replicas: i32, rv: Option<u64>) -> Call {
        write("d0", DeployAction::Create, replicas, 1, id, rv)
    }

    fn scale(id: u64, replicas: i32, rv: Option<u64>) -> Call {
        write("d0", DeployAction::Scale, replicas, 1, id, rv)
    }

    fn delete(id: u64) -> Call {
        write("d0", DeployAction::Delete, 1, 1, id, None)
    }

    fn view(id: u64, replicas: i32) -> DeploymentView {
        DeploymentView {
            name: "d0".into(),
            replicas,
            version: 1,
            write_id: id,
            resource_version: 99,
            ready_current: replicas as u32,
            other_pods: 0,
        }
    }

    fn converged(views: Vec<DeploymentView>) -> Vec<crate::history::Op> {
        let c = |d| Call::Converge { seconds: d, deployments: None, orphan_pods: 0 };
        vec![
            invoke(900, 100, c(None)),
            ok(900, 101, Call::Converge { seconds: Some(2.5), deployments: Some(views), orphan_pods: 0 }),
        ]
    }

    fn run(mut ops: Vec<crate::history::Op>, views: Vec<DeploymentView>) -> CheckResult {
        ops.push(nemesis(50));
        ops.extend(converged(views));
        check(&history(ops))
    }

    #[test]
    fn the_last_acknowledged_write_converged_passes() {
        let r = run(
            vec![
                invoke(0, 1, create(1, 2, None)),
                ok(0, 2, create(1, 2, Some(10))),
                invoke(1, 3, scale(2, 3, None)),
                ok(1, 4, scale(2, 3, Some(12))),
                invoke(0, 5, scale(3, 1, None)),
                fail(0, 6, scale(3, 1, None)),
            ],
            vec![view(2, 3)],
        );
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
        assert_eq!(r.stats["convergence_ms"], 2500);
        assert_eq!(r.stats["writes_ok"], 2);
    }

    #[test]
    fn an_indeterminate_write_may_win() {
        let r = run(
            vec![
                invoke(0, 1, create(1, 2, None)),
                ok(0, 2, create(1, 2, Some(10))),
                invoke(1, 3, scale(2, 3, None)),
                info(1, 4, scale(2, 3, None)),
            ],
            vec![view(2, 3)],
        );
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
    }

    #[test]
    fn an_older_write_in_the_final_state_is_a_lost_write() {
        let r = run(
            vec![
                invoke(0, 1, create(1, 2, None)),
                ok(0, 2, create(1, 2, Some(10))),
                invoke(1, 3, scale(2, 3, None)),
                ok(1, 4, scale(2, 3, Some(12))),
            ],
            vec![view(1, 2)],
        );
        assert_eq!(r.verdict, Verdict::Invalid);
        assert_eq!(kinds(&r), ["lost-write"]);
    }

    #[test]
    fn a_deployment_missing_without_a_delete_is_a_lost_write_and_a_resurrected_one_too() {
        let writes = vec![invoke(0, 1, create(1, 2, None)), ok(0, 2, create(1, 2, Some(10)))];
        assert_eq!(kinds(&run(writes.clone(), vec![])), ["lost-write"]);
        let mut deleted = writes;
        deleted.extend([invoke(0, 3, delete(2)), ok(0, 4, delete(2))]);
        assert_eq!(run(deleted.clone(), vec![]).verdict, Verdict::Valid);
        assert_eq!(kinds(&run(deleted, vec![view(1, 2)])), ["lost-write"]);
    }

    #[test]
    fn a_failed_write_in_the_final_state_is_unexpected_and_a_torn_spec_is_reported() {
        let ops = vec![
            invoke(0, 1, create(1, 2, None)),
            ok(0, 2, create(1, 2, Some(10))),
            invoke(0, 3, scale(2, 0, None)),
            fail(0, 4, scale(2, 0, None)),
        ];
        assert_eq!(kinds(&run(ops.clone(), vec![view(2, 0)])), ["unexpected-write"]);
        assert_eq!(kinds(&run(ops, vec![view(1, 3)])), ["torn-write"]);
    }

    #[test]
    fn resource_versions_must_increase_and_not_repeat() {
        let r = run(
            vec![
                invoke(0, 1, create(1, 2, None)),
                ok(0, 2, create(1, 2, Some(10))),
                invoke(0, 3, scale(2, 3, None)),
                ok(0, 4, scale(2, 3, Some(10))),
            ],
            vec![view(2, 3)],
        );
        assert_eq!(kinds(&r), ["rv-reused", "rv-order"]);
    }

    #[test]
    fn no_convergence_is_invalid_and_no_read_unknown() {
        let mut ops = vec![invoke(0, 1, create(1, 2, None)), ok(0, 2, create(1, 2, Some(10)))];
        let mut late = view(1, 2);
        late.ready_current = 1;
        ops.push(invoke(900, 100, Call::Converge { seconds: None, deployments: None, orphan_pods: 0 }));
        ops.push(fail(900, 101, Call::Converge { seconds: None, deployments: Some(vec![late]), orphan_pods: 0 }));
        let r = check(&history(ops.clone()));
        assert_eq!(r.verdict, Verdict::Invalid);
        assert_eq!(kinds(&r), ["not-converged"]);
        assert!(r.anomalies[0].message.contains("d0 wants 2×v1, has 1 ready current"), "{}", r.anomalies[0].message);
        let r = check(&history(ops[..2].to_vec()));
        assert_eq!(r.verdict, Verdict::Unknown);
    }
}
