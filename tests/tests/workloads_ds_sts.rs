//! DaemonSets and StatefulSets on live clusters of real `berth-server` processes with real
//! `berth-agent` processes (hollow nodes, `--runtime fake`), driven by the real `berthctl`:
//! * a DaemonSet follows its nodes: a pod per node, one more when a node joins, none on a
//!   node that stops matching or is deleted; `drain` refuses DaemonSet pods unless
//!   `--ignore-daemonsets`, which leaves them running;
//! * a StatefulSet creates `web-0…` strictly in order, each Ready before the next, scales
//!   down from the highest ordinal, and rolls an update down to its partition only;
//! * at most one pod per identity: a StatefulSet pod on a node whose agent was killed is
//!   not replaced while its object exists, and is recreated under the same name elsewhere
//!   once the Node object is deleted;
//! * `volumeClaimTemplates` are refused by the API.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_jepsen::procs::{berth_agent_binary, free_port};
use berth_testkit::blocking::eventually;
use berth_testkit::KillOnDrop;
use berth_tests::berthctl::{berthctl_binary, run_bounded, Agent, CtlCluster};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// One more agent process running one hollow node `{prefix}-0`; SIGKILLed when dropped.
struct ExtraAgent(KillOnDrop);

impl ExtraAgent {
    fn start(c: &CtlCluster, prefix: &str) -> ExtraAgent {
        let log = std::fs::File::create(c.dir.join(format!("agent-{prefix}.log"))).expect("agent log");
        let child = Command::new(berth_agent_binary().expect("berth-agent built"))
            .args(c.hollow_api_flags(prefix, 0))
            .arg("--data-dir")
            .arg(c.dir.join(format!("agent-{prefix}")))
            .args(["--listen-port", &free_port().to_string(), "--lease-seconds", "1", "--node-ip", "127.0.0.1"])
            .args(["--node-name", prefix, "--runtime", "fake", "--fake-nodes", "1"])
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("starting berth-agent");
        let agent = ExtraAgent(KillOnDrop(child));
        let node = format!("{prefix}-0");
        eventually(WAIT, &format!("node {node} Ready"), || node_ready(c, &node).then_some(()));
        agent
    }

    /// kill -9: the node's pods are left behind, as after a machine failure.
    fn kill(&mut self) {
        self.0.kill();
    }
}

fn node_ready(c: &CtlCluster, node: &str) -> bool {
    c.try_ok(&["get", "node", node, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"])
        .is_ok_and(|s| s.trim() == "True")
}

fn items(out: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(out).expect("JSON")["items"].as_array().cloned().unwrap_or_default()
}

fn pods(c: &CtlCluster, selector: &str) -> Vec<Value> {
    items(&c.ok(&["get", "pods", "-l", selector, "-o", "json"]))
}

fn get(c: &CtlCluster, what: &str, name: &str) -> Value {
    serde_json::from_str(&c.ok(&["get", what, name, "-o", "json"])).expect("JSON")
}

fn name(p: &Value) -> &str {
    p["metadata"]["name"].as_str().unwrap_or_default()
}

fn node_of(p: &Value) -> &str {
    p["spec"]["nodeName"].as_str().unwrap_or_default()
}

fn terminating(p: &Value) -> bool {
    p["metadata"]["deletionTimestamp"].is_string()
}

fn ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn revision(p: &Value) -> &str {
    p["metadata"]["labels"]["controller-revision-hash"].as_str().unwrap_or_default()
}

/// Live (not terminating) pods by node.
fn live_by_node(pods: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for p in pods.iter().filter(|p| !terminating(p)) {
        *m.entry(node_of(p).to_string()).or_insert(0) += 1;
    }
    m
}

fn daemonset_manifest() -> String {
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms":
                    [{"matchExpressions": [{"key": "skip-agent", "operator": "DoesNotExist"}]}]}}},
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}}})
    .to_string()
}

/// (desired, current, ready, available, updated, misscheduled) from the DaemonSet's status.
fn ds_status(c: &CtlCluster) -> (i64, i64, i64, i64, i64, i64) {
    let s = get(c, "daemonset", "agent")["status"].clone();
    let n = |k: &str| s[k].as_i64().unwrap_or(0);
    (
        n("desiredNumberScheduled"),
        n("currentNumberScheduled"),
        n("numberReady"),
        n("numberAvailable"),
        n("updatedNumberScheduled"),
        n("numberMisscheduled"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn daemonset_follows_nodes_and_survives_drain() {
    let c = CtlCluster::start(1, Agent::Fake(2)).await;
    c.ok_stdin(&["apply", "-f", "-"], &daemonset_manifest());
    let both: BTreeMap<String, usize> = [("hollow-0".to_string(), 1), ("hollow-1".to_string(), 1)].into();
    eventually(WAIT, "a Ready daemon pod on each node", || {
        let p = pods(&c, "app=agent");
        (live_by_node(&p) == both && p.iter().all(ready)).then_some(())
    });
    eventually(WAIT, "status counts both nodes", || (ds_status(&c) == (2, 2, 2, 2, 2, 0)).then_some(()));
    let s = get(&c, "daemonset", "agent")["status"].clone();
    assert_eq!((s["numberUnavailable"].as_i64().unwrap_or(0), s["observedGeneration"].as_i64()), (0, Some(1)));
    // Pinned by node affinity (bound by the scheduler), tolerating cordons and node failures.
    let pod = pods(&c, "app=agent").into_iter().find(|p| node_of(p) == "hollow-0").unwrap();
    assert_eq!(
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"],
        json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["hollow-0"]}]}])
    );
    let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
    for key in ["node.kubernetes.io/unschedulable", "node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"] {
        assert!(tolerations.iter().any(|t| t["key"] == key), "{key} in {tolerations:?}");
    }
    assert!(!revision(&pod).is_empty());
    assert_eq!(pod["metadata"]["labels"]["pod-template-generation"], "1");

    // A node joins: it gets a pod.
    let mut extra = ExtraAgent::start(&c, "extra");
    eventually(WAIT, "a daemon pod on the new node", || {
        let p = pods(&c, "app=agent");
        (live_by_node(&p).get("extra-0") == Some(&1) && p.iter().filter(|p| !terminating(p)).all(ready)).then_some(())
    });
    eventually(WAIT, "status counts three nodes", || (ds_status(&c) == (3, 3, 3, 3, 3, 0)).then_some(()));

    // The node goes away (agent stopped, Node deleted): its pod is garbage collected
    // (after Kubernetes' 40 s pod-GC quarantine), meanwhile the rest of the test goes on.
    extra.kill();
    c.ok(&["delete", "node", "extra-0"]);
    eventually(WAIT, "desired back to two", || (ds_status(&c).0 == 2).then_some(()));

    // A node stops matching: its pod goes; matching again: it comes back.
    c.ok(&["label", "node", "hollow-1", "skip-agent=yes"]);
    eventually(WAIT, "no daemon pod on the unlabelled node", || {
        pods(&c, "app=agent").iter().all(|p| node_of(p) != "hollow-1").then_some(())
    });
    c.ok(&["label", "node", "hollow-1", "skip-agent-"]);
    eventually(WAIT, "the daemon pod back on hollow-1", || {
        let p = pods(&c, "app=agent");
        p.iter().any(|p| node_of(p) == "hollow-1" && ready(p) && !terminating(p)).then_some(())
    });

    // drain refuses DaemonSet pods without --ignore-daemonsets, and leaves them with it.
    let before = pods(&c, "app=agent").into_iter().find(|p| node_of(p) == "hollow-0").unwrap();
    let (_, stderr) = c.fails(&["drain", "hollow-0"]);
    assert!(stderr.contains("cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"), "{stderr}");
    c.ok(&["drain", "hollow-0", "--ignore-daemonsets", "--timeout=30s"]);
    let after = pods(&c, "app=agent").into_iter().find(|p| node_of(p) == "hollow-0").unwrap();
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    assert!(!terminating(&after) && ready(&after));
    c.ok(&["uncordon", "hollow-0"]);

    // A template change rolls out node by node (maxUnavailable 1): one of the two nodes
    // keeps a Ready pod throughout.
    let on_hollow = |p: &Value| node_of(p).starts_with("hollow-");
    let old_hash = revision(&pods(&c, "app=agent").into_iter().find(on_hollow).unwrap()).to_string();
    let watch = Watcher::start(&c, "app=agent");
    let mut changed: Value = serde_json::from_str(&daemonset_manifest()).unwrap();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:1.36");
    c.ok_stdin(&["apply", "-f", "-"], &changed.to_string());
    eventually(WAIT, "both nodes run the new template", || {
        let p = pods(&c, "app=agent");
        let live: Vec<&Value> = p.iter().filter(|p| on_hollow(p) && !terminating(p)).collect();
        (live.len() == 2 && live.iter().all(|p| ready(p) && revision(p) != old_hash)).then_some(())
    });
    eventually(WAIT, "status: both updated", || (ds_status(&c) == (2, 2, 2, 2, 2, 0)).then_some(()));
    let snapshots = watch.take();
    drop(watch);
    for s in &snapshots {
        let serving = s.values().filter(|p| p.node.starts_with("hollow-") && p.ready && !p.terminating).count();
        assert!(serving >= 1, "both nodes unavailable at once: {s:?}");
    }
    assert_eq!(get(&c, "daemonset", "agent")["status"]["observedGeneration"], 2);

    eventually(Duration::from_secs(60), "the deleted node's pod collected", || {
        pods(&c, "app=agent").iter().all(|p| node_of(p) != "extra-0").then_some(())
    });
    eventually(WAIT, "status back to two nodes", || (ds_status(&c) == (2, 2, 2, 2, 2, 0)).then_some(()));
    let row = c.ok(&["get", "daemonset", "agent", "--no-headers"]);
    assert_eq!(row.split_whitespace().take(6).collect::<Vec<_>>(), ["agent", "2", "2", "2", "2", "2"], "{row}");
    let out = c.ok(&["rollout", "status", "daemonset/agent", "--timeout=30s"]);
    assert!(out.contains("daemon set \"agent\" successfully rolled out"), "{out}");
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.name=agent"]);
    for reason in ["SuccessfulCreate", "Created pod: agent-", "SuccessfulDelete", "Deleted pod: agent-"] {
        assert!(events.contains(reason), "{reason} in {events}");
    }
}

/// A pod as one poll saw it.
#[derive(Debug, Clone)]
struct Seen {
    uid: String,
    node: String,
    ready: bool,
    terminating: bool,
    revision: String,
}

type Snapshot = BTreeMap<String, Seen>;

/// Polls the pods matching `selector` (a real berthctl each time) until stopped, keeping
/// every snapshot, so ordering rules can be checked over everything observed.
struct Watcher {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Snapshot>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(c: &CtlCluster, selector: &str) -> Watcher {
        let (stop, seen) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let (kubeconfig, home): (PathBuf, PathBuf) = (c.kubeconfig.clone(), c.dir.clone());
        let selector = selector.to_string();
        let handle = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut cmd = Command::new(berthctl_binary());
                    cmd.args(["get", "pods", "-l", &selector, "-o", "json"])
                        .env("KUBECONFIG", &kubeconfig)
                        .env("HOME", &home)
                        .env_remove("BERTH_KUBECONFIG")
                        .stdin(Stdio::null());
                    let out = run_bounded(cmd, None, Duration::from_secs(10));
                    if out.status.success() {
                        let snapshot: Snapshot = items(&String::from_utf8_lossy(&out.stdout))
                            .iter()
                            .map(|p| {
                                let seen = Seen {
                                    uid: p["metadata"]["uid"].as_str().unwrap_or_default().to_string(),
                                    node: node_of(p).to_string(),
                                    ready: ready(p),
                                    terminating: terminating(p),
                                    revision: revision(p).to_string(),
                                };
                                (name(p).to_string(), seen)
                            })
                            .collect();
                        seen.lock().unwrap().push(snapshot);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Watcher { stop, seen, handle: Some(handle) }
    }

    /// Every snapshot so far (and forgets them).
    fn take(&self) -> Vec<Snapshot> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn statefulset_manifest(name: &str, app: &str, replicas: i32, image: &str) -> String {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {"replicas": replicas, "serviceName": "nginx", "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app}}, "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "c", "image": image, "command": ["sleep", "3600"]}]}}}})
    .to_string()
}

fn sts_ready(c: &CtlCluster, selector: &str, names: &[&str]) -> bool {
    let p = pods(c, selector);
    let live: Vec<&Value> = p.iter().filter(|p| !terminating(p)).collect();
    live.len() == names.len() && names.iter().all(|n| live.iter().any(|p| name(p) == *n && ready(p)))
}

#[tokio::test(flavor = "multi_thread")]
async fn statefulset_orders_creation_scale_down_and_partitioned_update() {
    let c = CtlCluster::start(1, Agent::Fake(2)).await;

    // volumeClaimTemplates are refused with a clear message.
    let mut with_claims: Value = serde_json::from_str(&statefulset_manifest("data", "data", 1, "busybox")).unwrap();
    with_claims["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}}]);
    let out = c.run(&["apply", "-f", "-"], Some(&with_claims.to_string()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr
            .contains("spec.volumeClaimTemplates: Forbidden: persistent volume claims are not supported by Berth yet"),
        "{stderr}"
    );
    assert!(c.fails(&["get", "statefulset", "data"]).1.contains("not found"));

    let watch = Watcher::start(&c, "app=web");
    // minReadySeconds 2: each step of the ordered creation lasts at least a second (Ready
    // times have whole-second precision), long enough for the watcher to see it.
    let mut web: Value = serde_json::from_str(&statefulset_manifest("web", "web", 3, "busybox")).unwrap();
    web["spec"]["minReadySeconds"] = json!(2);
    c.ok_stdin(&["apply", "-f", "-"], &web.to_string());
    eventually(WAIT, "web-0..2 Ready", || sts_ready(&c, "app=web", &["web-0", "web-1", "web-2"]).then_some(()));

    let snapshots = watch.take();
    for n in 1..=2 {
        assert!(snapshots.iter().any(|s| s.len() == n), "never saw exactly {n} pods: creation was not stepwise");
    }
    for s in &snapshots {
        for i in 1..3 {
            if s.contains_key(&format!("web-{i}")) {
                let prev = s.get(&format!("web-{}", i - 1));
                let history: Vec<String> = snapshots
                    .iter()
                    .map(|s| s.iter().map(|(n, p)| format!("{n}:{}", p.ready)).collect::<Vec<_>>().join(","))
                    .collect();
                assert!(
                    prev.is_some_and(|p| p.ready),
                    "web-{i} existed before web-{} was Ready: {s:?}\n{history:#?}",
                    i - 1
                );
            }
        }
    }
    // Each pod was created no earlier than its predecessor became Ready.
    let created: Vec<Value> = ["web-0", "web-1", "web-2"].iter().map(|n| get(&c, "pod", n)).collect();
    for i in 1..3 {
        let ready_at = created[i - 1]["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .and_then(|c| c["lastTransitionTime"].as_str())
            .unwrap_or_default()
            .to_string();
        let created_at = created[i]["metadata"]["creationTimestamp"].as_str().unwrap_or_default();
        assert!(
            !ready_at.is_empty() && created_at >= ready_at.as_str(),
            "web-{i} created {created_at} < {ready_at}: {}",
            created[i - 1]["status"]
        );
    }
    let web1 = get(&c, "pod", "web-1");
    assert_eq!((web1["spec"]["hostname"].as_str(), web1["spec"]["subdomain"].as_str()), (Some("web-1"), Some("nginx")));
    assert_eq!(web1["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"], "web-1");
    assert_eq!(web1["metadata"]["labels"]["apps.kubernetes.io/pod-index"], "1");
    let first_revision = revision(&web1).to_string();
    eventually(WAIT, "status of three Ready replicas", || {
        let s = get(&c, "statefulset", "web")["status"].clone();
        let counts = ["replicas", "readyReplicas", "currentReplicas", "updatedReplicas", "availableReplicas"]
            .map(|k| s[k].as_i64().unwrap_or(-1));
        (counts == [3; 5]
            && s["currentRevision"] == first_revision.as_str()
            && s["updateRevision"] == first_revision.as_str()
            && s["observedGeneration"] == 1)
            .then_some(())
    });

    // Scale down: web-2 goes before web-1 starts going.
    c.ok(&["scale", "statefulset", "web", "--replicas=1"]);
    eventually(WAIT, "only web-0 left", || sts_ready(&c, "app=web", &["web-0"]).then_some(()));
    for s in watch.take() {
        if s.get("web-1").is_none_or(|p| p.terminating) {
            assert!(!s.contains_key("web-2"), "web-1 went before web-2: {s:?}");
        }
    }

    // Back to four, then a rolling update with partition 2: web-3 then web-2, never web-0/1.
    c.ok(&["scale", "statefulset", "web", "--replicas=4"]);
    eventually(WAIT, "four Ready", || sts_ready(&c, "app=web", &["web-0", "web-1", "web-2", "web-3"]).then_some(()));
    watch.take();
    let mut updated: Value = serde_json::from_str(&statefulset_manifest("web", "web", 4, "busybox:1.36")).unwrap();
    updated["spec"]["minReadySeconds"] = json!(2);
    updated["spec"]["updateStrategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}});
    c.ok_stdin(&["apply", "-f", "-"], &updated.to_string());
    let update_revision = eventually(WAIT, "a new update revision", || {
        let s = get(&c, "statefulset", "web")["status"].clone();
        s["updateRevision"].as_str().filter(|r| *r != first_revision).map(String::from)
    });
    eventually(WAIT, "web-2 and web-3 updated and Ready", || {
        let p = pods(&c, "app=web");
        let updated = |n: &str| p.iter().any(|p| name(p) == n && revision(p) == update_revision && ready(p));
        (updated("web-2") && updated("web-3")).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2)); // anything wrong with web-0/1 would start now
    let snapshots = watch.take();
    drop(watch);
    let uid_of = |n: &str| snapshots.first().and_then(|s| s.get(n)).map(|p| p.uid.clone());
    let kept = [("web-0", uid_of("web-0")), ("web-1", uid_of("web-1"))];
    for s in &snapshots {
        for (n, uid) in &kept {
            let p = s.get(*n).unwrap_or_else(|| panic!("{n} disappeared: {s:?}"));
            assert!(
                p.revision == first_revision && !p.terminating && Some(&p.uid) == uid.as_ref(),
                "{n} touched below the partition: {s:?}"
            );
        }
        // web-2 is only replaced once web-3 runs the new revision and is Ready.
        if s.get("web-2").is_none_or(|p| p.terminating || p.revision == update_revision) {
            let web3 = s.get("web-3");
            assert!(web3.is_some_and(|p| p.revision == update_revision && p.ready), "web-2 before web-3: {s:?}");
        }
    }
    let s = get(&c, "statefulset", "web")["status"].clone();
    assert_eq!(s["currentRevision"], first_revision.as_str());
    assert_eq!((s["currentReplicas"].as_i64(), s["updatedReplicas"].as_i64()), (Some(2), Some(2)));
    let generation = get(&c, "statefulset", "web")["metadata"]["generation"].clone();
    assert_eq!(s["observedGeneration"], generation);
    let out = c.ok(&["rollout", "status", "statefulset/web", "--timeout=30s"]);
    assert!(out.contains("partitioned roll out complete: 2 new pods have been updated"), "{out}");
    let row = c.ok(&["get", "statefulset", "web", "--no-headers"]);
    assert_eq!(row.split_whitespace().take(2).collect::<Vec<_>>(), ["web", "4/4"], "{row}");
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.name=web"]);
    assert!(events.contains("create Pod web-0 in StatefulSet web successful"), "{events}");
    assert!(events.contains("delete Pod web-3 in StatefulSet web successful"), "{events}");
}

#[tokio::test(flavor = "multi_thread")]
async fn statefulset_pod_on_a_dead_node_is_replaced_only_once_it_is_gone() {
    let c = CtlCluster::start_with_server_args(
        1,
        Agent::Fake(1),
        &["--node-monitor-grace-period", "5s", "--pod-eviction-timeout", "1s"],
    )
    .await;
    // The pod must land on the node that will die: keep it off hollow-0 for now.
    c.ok(&["cordon", "hollow-0"]);
    let mut doomed = ExtraAgent::start(&c, "doomed");
    c.ok_stdin(&["apply", "-f", "-"], &statefulset_manifest("db", "db", 1, "busybox"));
    eventually(WAIT, "db-0 Ready", || sts_ready(&c, "app=db", &["db-0"]).then_some(()));
    let old = get(&c, "pod", "db-0");
    assert_eq!(node_of(&old), "doomed-0");
    let old_uid = old["metadata"]["uid"].as_str().unwrap().to_string();
    c.ok(&["uncordon", "hollow-0"]);

    doomed.kill();
    eventually(WAIT, "db-0 evicted from the unreachable node (Terminating)", || {
        terminating(&get(&c, "pod", "db-0")).then_some(())
    });
    // Its agent is gone, so the pod stays Terminating, and nothing replaces it meanwhile.
    let until = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < until {
        let p = pods(&c, "app=db");
        assert_eq!(p.len(), 1, "one db pod at most: {p:?}");
        assert_eq!(p[0]["metadata"]["uid"], old_uid.as_str(), "db-0 replaced while the old one exists");
        assert_eq!(node_of(&p[0]), "doomed-0");
        std::thread::sleep(Duration::from_millis(200));
    }
    let s = get(&c, "statefulset", "db")["status"].clone();
    assert_eq!((s["replicas"].as_i64(), s["readyReplicas"].as_i64()), (Some(0), Some(0)));

    // The Node object is deleted: the pod is removed and db-0 comes back elsewhere.
    c.ok(&["delete", "node", "doomed-0"]);
    let new = eventually(WAIT, "db-0 recreated on the live node", || {
        let p = pods(&c, "app=db");
        p.into_iter().find(|p| p["metadata"]["uid"] != old_uid.as_str() && ready(p))
    });
    assert_eq!(name(&new), "db-0");
    assert_eq!(node_of(&new), "hollow-0");
}
