//! `berthctl get` against 3 real servers and a hollow-node agent: kubectl's table layout,
//! output formats, selectors, several types at once, kubectl's error wording — and
//! `get pods -w` following a rollout's transitions while the Raft leader it is connected
//! to is killed, without missing or repeating a change.

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_testkit::blocking::eventually;
use berth_tests::berthctl::{Agent, CtlCluster, SharedLines};

const WEB: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.14.2
"#;

/// The real kubectl with the cluster's kubeconfig (drives changes while berthctl observes).
fn kubectl(c: &CtlCluster, args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = Command::new("kubectl");
    cmd.args(args).env("KUBECONFIG", &c.kubeconfig).env("HOME", &c.dir).stdin(Stdio::piped());
    let out = berth_tests::berthctl::run_bounded(cmd, stdin, Duration::from_secs(60));
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn snapshot(lines: &SharedLines) -> Vec<String> {
    lines.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn get_prints_kubectl_tables_formats_and_errors() {
    let c = CtlCluster::start(3, Agent::Fake(2)).await;
    let nodes = c.ok(&["get", "nodes"]);
    let mut lines = nodes.lines();
    assert_eq!(lines.next(), Some("NAME       STATUS   ROLES    AGE   VERSION"), "{nodes}");
    assert_eq!(lines.filter(|l| l.starts_with("hollow-") && l.contains("   Ready    <none>   ")).count(), 2, "{nodes}");

    kubectl(&c, &["apply", "-f", "-"], Some(WEB));
    eventually(Duration::from_secs(60), "3 pods Running", || {
        let out = c.ok(&["get", "pods", "-l", "app=web", "--no-headers"]);
        (out.lines().filter(|l| l.contains(" Running ")).count() == 3).then_some(())
    });
    eventually(Duration::from_secs(30), "the deployment reports 3/3 available", || {
        c.ok(&["get", "deploy", "web", "--no-headers"]).contains(" 3/3 ").then_some(())
    });

    // Several types at once: one table each, names prefixed with the type, blank line between.
    let all = c.ok(&["get", "deploy,rs,po"]);
    let tables: Vec<&str> = all.split("\n\n").collect();
    assert_eq!(tables.len(), 3, "{all}");
    assert!(tables[0].starts_with("NAME                  READY   UP-TO-DATE   AVAILABLE   AGE\ndeployment.apps/web   3/3     3            3           "), "{all}");
    assert!(
        tables[1].starts_with("NAME                             DESIRED   CURRENT   READY   AGE\nreplicaset.apps/web-"),
        "{all}"
    );
    assert!(tables[2].starts_with("NAME                       READY   STATUS    RESTARTS   AGE\npod/web-"), "{all}");

    // -o wide adds the priority-1 columns; -A a NAMESPACE column; labels as columns.
    let wide = c.ok(&["get", "pods", "-o", "wide"]);
    assert!(
        wide.starts_with("NAME ")
            && wide.lines().next().unwrap().ends_with("IP          NODE       NOMINATED NODE   READINESS GATES"),
        "{wide}"
    );
    let everywhere = c.ok(&["get", "deploy", "-A"]);
    assert!(
        everywhere.starts_with("NAMESPACE   NAME   READY   UP-TO-DATE   AVAILABLE   AGE\ndefault     web    3/3 "),
        "{everywhere}"
    );
    let labels = c.ok(&["get", "deploy", "web", "--show-labels", "-L", "app"]);
    assert!(labels.starts_with("NAME   READY   UP-TO-DATE   AVAILABLE   AGE   APP   LABELS\nweb    3/3 "), "{labels}");
    assert!(labels.trim_end().ends_with("web   app=web"), "{labels}");

    // Formats.
    assert_eq!(c.ok(&["get", "deploy/web", "-o", "name"]), "deployment.apps/web\n");
    let names = c.ok(&["get", "pods", "-o", "jsonpath={.items[*].metadata.labels.app}"]);
    assert_eq!(names, "web web web");
    let yaml = c.ok(&["get", "deployment", "web", "-o", "yaml"]);
    assert!(yaml.contains("kind: Deployment\n") && yaml.contains("  name: web\n"), "{yaml}");
    let json: serde_json::Value = serde_json::from_str(&c.ok(&["get", "pods", "-o", "json"])).unwrap();
    assert_eq!(json["kind"], "List");
    assert_eq!(json["items"].as_array().unwrap().len(), 3);
    assert_eq!(json["items"][0]["kind"], "Pod", "list items carry their kind, as kubectl prints them");
    let running = c.ok(&["get", "pods", "--field-selector", "status.phase=Running", "-o", "name"]);
    assert_eq!(running.lines().count(), 3, "{running}");
    assert_eq!(c.ok(&["get", "pods", "-l", "app=nope", "-o", "name"]), "");

    // Errors, in kubectl's words, exit 1.
    let (code, err) = c.fails(&["get", "pod", "nope"]);
    assert_eq!((code, err.as_str()), (1, "Error from server (NotFound): pods \"nope\" not found\n"));
    let (code, err) = c.fails(&["get", "deployments.apps", "nope"]);
    assert_eq!((code, err.as_str()), (1, "Error from server (NotFound): deployments.apps \"nope\" not found\n"));
    let (code, err) = c.fails(&["get", "frobs"]);
    assert_eq!((code, err.as_str()), (1, "error: the server doesn't have a resource type \"frobs\"\n"));
    assert!(c.try_ok(&["get", "pod", "nope", "--ignore-not-found"]).is_ok());
    let empty = c.run(&["get", "pods", "-n", "kube-public"], None);
    assert!(empty.status.success());
    assert_eq!(String::from_utf8_lossy(&empty.stderr), "No resources found in kube-public namespace.\n");
    let (_, err) = c.fails(&["get", "pods", "-o", "xml"]);
    assert!(err.starts_with("error: unable to match a printer suitable for the output format \"xml\""), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn get_watch_follows_a_rollout_through_a_leader_kill() {
    let mut c = CtlCluster::start(3, Agent::None).await;
    let leader = eventually(Duration::from_secs(30), "a leader holds the task leases", || c.leader_index());
    // The agent follows one API server: keep it on a server that survives.
    c.start_agent_on(Agent::Fake(2), (leader + 2) % 3);
    // Both watchers talk to the leader first; the other servers are in the kubeconfig's
    // berth.dev/servers extension for failover.
    let kubeconfig = c.kubeconfig_preferring(leader);
    let kc = kubeconfig.to_str().unwrap();
    let mut table_watch = c.spawn(&["--kubeconfig", kc, "get", "pods", "-w"]);
    let table = table_watch.stdout_lines();
    let events_template = "jsonpath={.metadata.name} {.metadata.resourceVersion} {.status.phase}{\"\\n\"}";
    let mut event_watch =
        c.spawn(&["--kubeconfig", kc, "get", "pods", "-w", "--output-watch-events", "-o", events_template]);
    let events = event_watch.stdout_lines();

    kubectl(&c, &["apply", "-f", "-"], Some(WEB));
    eventually(Duration::from_secs(60), "the watch shows 3 pods Running", || {
        let rows = snapshot(&table);
        let running: std::collections::HashSet<&str> =
            rows.iter().filter(|l| l.contains(" Running ")).filter_map(|l| l.split_whitespace().next()).collect();
        (running.len() == 3).then_some(())
    });

    // Kill the Raft leader (the server both watches are connected to), then roll out a new
    // image through a surviving server.
    c.servers.members[leader].kill();
    let survivor = (leader + 1) % 3;
    let survivor_kc = c.kubeconfig_preferring(survivor);
    let set_image = |image: &str| {
        let mut cmd = Command::new("kubectl");
        cmd.args(["--kubeconfig", survivor_kc.to_str().unwrap(), "set", "image", "deployment/web", image]);
        cmd.env("HOME", &c.dir);
        berth_tests::berthctl::run_bounded(cmd, None, Duration::from_secs(30))
    };
    eventually(Duration::from_secs(30), "set image through a survivor", || {
        set_image("nginx=nginx:1.16.1").status.success().then_some(())
    });

    let final_pods = eventually(Duration::from_secs(90), "the rollout completes on the new leader", || {
        let out = c
            .try_ok(&[
                "--kubeconfig",
                survivor_kc.to_str().unwrap(),
                "get",
                "pods",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.metadata.resourceVersion} {.spec.containers[0].image} {.status.phase}{\"\\n\"}{end}",
            ])
            .ok()?;
        let pods: Vec<Vec<String>> = out.lines().map(|l| l.split(' ').map(String::from).collect()).collect();
        (pods.len() == 3 && pods.iter().all(|p| p[2] == "nginx:1.16.1" && p[3] == "Running")).then_some(pods)
    });

    // The table watch saw the new pods go Pending → ContainerCreating/Running and old ones Terminating.
    eventually(Duration::from_secs(30), "the watch saw the rollout", || {
        let rows = snapshot(&table);
        let saw =
            |name: &str, status: &str| rows.iter().any(|l| l.starts_with(name) && l.contains(&format!(" {status} ")));
        let new_ok = final_pods.iter().all(|p| saw(&p[0], "Pending") && saw(&p[0], "Running"));
        let terminating = rows.iter().any(|l| l.contains(" Terminating "));
        (new_ok && terminating).then_some(())
    });
    // The event watch saw every pod's final version, each change once, in order.
    eventually(Duration::from_secs(30), "the event watch caught up", || {
        let lines = snapshot(&events);
        let last: HashMap<String, String> = lines
            .iter()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let _event = f.next()?;
                Some((f.next()?.to_string(), f.next()?.to_string()))
            })
            .collect();
        final_pods.iter().all(|p| last.get(&p[0]) == Some(&p[1])).then_some(())
    });
    let lines = snapshot(&events);
    let mut versions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for l in &lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert!(
            f.len() >= 3 && ["ADDED", "MODIFIED", "DELETED"].contains(&f[0]),
            "unexpected line {l:?} in {lines:#?}"
        );
        versions.entry(f[1].to_string()).or_default().push(f[2].parse().unwrap());
    }
    for (pod, revs) in &versions {
        assert!(revs.windows(2).all(|w| w[0] < w[1]), "{pod}: a change repeated or out of order: {revs:?}");
    }
    assert!(versions.len() >= 6, "3 old + 3 new pods: {versions:?}");

    // Ctrl-C ends the watch cleanly.
    let status = table_watch.interrupt(Duration::from_secs(5)).expect("berthctl exits on Ctrl-C");
    assert!(status.success(), "{status:?}");
    drop(event_watch);
}
