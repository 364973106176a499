//! Black-box tests of berthctl's read and rollout verbs against a live 3-server cluster
//! with a process-runtime agent (pods really run, so they have logs and restarts):
//! `describe` (compared with real kubectl's output for the same objects), `rollout
//! status|history|undo|restart|pause|resume`, `logs` (-c, --tail, -f, --previous, -l,
//! TYPE/NAME), `api-resources`, `version` and `cluster-info` (and its `dump`). Objects
//! are created with real kubectl so these checks do not depend on berthctl's own
//! mutating verbs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_testkit::blocking::eventually;
use berth_tests::berthctl::{run_bounded, Agent, CtlCluster};

/// Runs real kubectl against the cluster.
fn kubectl(c: &CtlCluster, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new("kubectl");
    cmd.args(args).env("KUBECONFIG", &c.kubeconfig).env("HOME", &c.dir);
    run_bounded(cmd, stdin, Duration::from_secs(60))
}

fn kubectl_ok(c: &CtlCluster, args: &[&str], stdin: Option<&str>) -> String {
    let out = kubectl(c, args, stdin);
    assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (exit code, stdout, stderr) of a berthctl run.
fn berthctl(c: &CtlCluster, args: &[&str]) -> (i32, String, String) {
    let out = c.run(args, None);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// RFC 3339 UTC for "now" (for Events the test records itself).
fn now_rfc3339() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

const WORKLOADS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: main
        image: busybox:1
        command: ["sh", "-c", "for i in 1 2 3; do echo line $i; done; sleep 3600"]
        ports: [{containerPort: 8080}]
        env: [{name: FOO, value: bar}]
        resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {memory: 128Mi}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: two, labels: {app: two}}
spec:
  containers:
  - {name: a, image: busybox, command: ["sh", "-c", "echo from-a; sleep 3600"]}
  - {name: b, image: busybox, command: ["sh", "-c", "echo from-b; sleep 3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: ticker}
spec:
  containers:
  - {name: t, image: busybox, command: ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]}
---
apiVersion: v1
kind: Pod
metadata: {name: crashy}
spec:
  containers:
  - {name: c, image: busybox, command: ["sh", "-c", "echo attempt; sleep 1; exit 1"]}
"#;

fn rollout_deployment(name: &str, image: &str, cause: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  annotations: {{kubernetes.io/change-cause: "{cause}"}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: c, image: "{image}", command: [sleep, "3600"]}}]
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn read_and_rollout_verbs_against_a_live_cluster() {
    let c = CtlCluster::start(3, Agent::Process).await;
    kubectl_ok(&c, &["apply", "-f", "-"], Some(WORKLOADS));
    eventually(Duration::from_secs(60), "workload pods running", || {
        let out = kubectl_ok(&c, &["get", "pods", "--no-headers"], None);
        let running = out.lines().filter(|l| l.contains("Running")).count();
        (running >= 4).then_some(())
    });
    info_verbs(&c);
    describe_checks(&c);
    logs_checks(&c);
    dump_checks(&c);
    rollout_checks(&c);
}

/// `api-resources` and `version` print what kubectl prints; `cluster-info` names the server.
fn info_verbs(c: &CtlCluster) {
    for args in [
        &["api-resources"][..],
        &["api-resources", "-o", "wide"],
        &["api-resources", "-o", "name"],
        &["api-resources", "--namespaced=false"],
        &["api-resources", "--api-group=apps", "--no-headers"],
        &["api-resources", "--sort-by=kind"],
    ] {
        assert_eq!(c.ok(args), kubectl_ok(c, args, None), "berthctl {args:?} differs from kubectl");
    }
    let version = c.ok(&["version"]);
    let kubectl_version: serde_json::Value =
        serde_json::from_str(&kubectl_ok(c, &["version", "-o", "json"], None)).expect("kubectl version JSON");
    let server = kubectl_version["serverVersion"]["gitVersion"].as_str().expect("server version").to_string();
    let lines: Vec<&str> = version.lines().collect();
    assert_eq!(lines.len(), 2, "{version}");
    assert!(lines[0].starts_with("Client Version: v1.33.0-berth."), "{version}");
    assert_eq!(lines[1], format!("Server Version: {server}"));
    let json: serde_json::Value = serde_json::from_str(&c.ok(&["version", "-o", "json"])).expect("version JSON");
    assert_eq!(json["serverVersion"]["gitVersion"], server.as_str());
    assert_eq!(json["clientVersion"]["major"], "1");
    let client_only: serde_json::Value =
        serde_json::from_str(&c.ok(&["version", "--client", "-o", "json"])).expect("client JSON");
    assert!(client_only.get("serverVersion").is_none());
    let yaml = c.ok(&["version", "-o", "yaml"]);
    assert!(yaml.starts_with("clientVersion:\n") && yaml.contains("\nserverVersion:\n"), "{yaml}");
    // The cluster services (`kubernetes.io/cluster-service`): kube-dns, as on a kubeadm
    // cluster, which the leader creates a moment after start.
    let url = &c.api_urls()[0];
    let expected = format!(
        "Kubernetes control plane is running at {url}\n\
         CoreDNS is running at {url}/api/v1/namespaces/kube-system/services/kube-dns:dns/proxy\n\n\
         To further debug and diagnose cluster problems, use 'berthctl cluster-info dump'.\n"
    );
    eventually(Duration::from_secs(20), "cluster-info naming CoreDNS", || {
        (c.ok(&["cluster-info"]) == expected).then_some(())
    });
    let theirs =
        kubectl_ok(c, &["cluster-info"], None).replace("'kubectl cluster-info dump'", "'berthctl cluster-info dump'");
    assert_eq!(c.ok(&["cluster-info"]), theirs);
}

/// `cluster-info dump` (run once workloads have logs): JSON lists and container logs.
fn dump_checks(c: &CtlCluster) {
    let dump = c.ok(&["cluster-info", "dump"]);
    assert!(dump.starts_with("{\n    \"apiVersion\": \"v1\",\n    \"items\": ["), "{}", &dump[..200.min(dump.len())]);
    for kind in ["NodeList", "EventList", "ServiceList", "DeploymentList", "ReplicaSetList", "PodList"] {
        assert!(dump.contains(&format!("\"kind\": \"{kind}\"")), "no {kind} in the dump");
    }
    assert!(
        dump.contains("==== START logs for container a of pod default/two ====\nfrom-a\n==== END logs for container a of pod default/two ====\n"),
        "logs of pod two missing from the dump"
    );
    let dir = c.dir.join("dump");
    let dir_arg = format!("--output-directory={}", dir.display());
    assert_eq!(c.ok(&["cluster-info", "dump", &dir_arg]), format!("Cluster info dumped to {}\n", dir.display()));
    let logs = std::fs::read_to_string(dir.join("default/two/logs.txt")).expect("pod two's logs file");
    assert!(logs.contains("from-b\n"), "{logs}");
    assert!(dir.join("nodes.json").is_file() && dir.join("kube-system/pods.json").is_file());
}

/// berthctl's describe equals kubectl's for the same object (retried: ages and lease
/// renewals may tick between the two runs).
fn same_as_kubectl(c: &CtlCluster, args: &[&str], adjust: impl Fn(String) -> String) -> String {
    eventually(Duration::from_secs(20), &format!("describe {args:?} equal to kubectl's"), || {
        let ours = c.ok(args);
        let theirs = adjust(kubectl_ok(c, args, None));
        (ours == theirs).then_some(ours)
    })
}

fn describe_checks(c: &CtlCluster) {
    // Events for kinds no Berth controller reports on, recorded the way a kubelet would
    // (a Node's events name it by uid = node name).
    let svc_uid = kubectl_ok(c, &["get", "svc", "web", "-o", "jsonpath={.metadata.uid}"], None);
    let now = now_rfc3339();
    let events = format!(
        r#"
apiVersion: v1
kind: Event
metadata: {{name: node-1.check, namespace: default}}
involvedObject: {{kind: Node, name: node-1, uid: node-1}}
reason: NodeChecked
message: checked by the read test
type: Normal
source: {{component: berthctl-test}}
firstTimestamp: "{now}"
lastTimestamp: "{now}"
count: 1
---
apiVersion: v1
kind: Event
metadata: {{name: web.check, namespace: default}}
involvedObject: {{kind: Service, name: web, namespace: default, uid: "{svc_uid}"}}
reason: ServiceChecked
message: checked by the read test
type: Warning
source: {{component: berthctl-test}}
firstTimestamp: "{now}"
lastTimestamp: "{now}"
count: 3
"#
    );
    kubectl_ok(c, &["apply", "-f", "-"], Some(&events));

    let pod = same_as_kubectl(c, &["describe", "pod", "two"], |s| s);
    assert!(pod.starts_with("Name:             two\nNamespace:        default\n"), "{pod}");
    assert!(pod.contains("Normal  Scheduled"), "pod events: {pod}");
    let deploy = same_as_kubectl(c, &["describe", "deployment", "web"], |s| s);
    assert!(deploy.contains("Replicas:               2 desired | 2 updated | 2 total | 2 available"), "{deploy}");
    assert!(deploy.contains("ScalingReplicaSet") && deploy.contains("NewReplicaSet:   web-"), "{deploy}");
    same_as_kubectl(c, &["describe", "rs", "-l", "app=web"], |s| s);
    let node = same_as_kubectl(c, &["describe", "node", "node-1"], |s| s);
    assert!(node.contains("NodeChecked") && node.contains("Non-terminated Pods:"), "{node}");
    // kubectl reads endpoints from EndpointSlices (Berth serves Endpoints), so that line differs.
    let svc = same_as_kubectl(c, &["describe", "service", "web"], |s| {
        s.lines()
            .map(|l| {
                if l.starts_with("Endpoints:") {
                    "Endpoints:                127.0.0.1:8080,127.0.0.1:8080"
                } else {
                    l
                }
            })
            .map(|l| format!("{l}\n"))
            .collect()
    });
    assert!(svc.contains("Warning  ServiceChecked"), "{svc}");
    assert!(svc.contains("(x3 over"), "{svc}");

    // kubectl's name-prefix fallback, selectors, TYPE/NAME, and several objects.
    let prefixed = c.ok(&["describe", "pods", "web"]);
    assert_eq!(prefixed.matches("\nControlled By:  ReplicaSet/web-").count(), 2, "{prefixed}");
    assert_eq!(prefixed.matches("\n\n\nName:").count(), 1, "two objects, two blank lines between: {prefixed}");
    // Retried: event ages may tick between the two runs.
    eventually(Duration::from_secs(20), "describe -l equal to the prefix match", || {
        (c.ok(&["describe", "pods", "-l", "app=web"]) == c.ok(&["describe", "pods", "web"])).then_some(())
    });
    eventually(Duration::from_secs(20), "describe TYPE/NAME equal to TYPE NAME", || {
        (c.ok(&["describe", "pod/two"]) == c.ok(&["describe", "pod", "two"])).then_some(())
    });
    assert!(c.ok(&["describe", "pods", "-A"]).contains("Name:             two\n"));
    let (code, _, err) = berthctl(c, &["describe", "pod", "nope"]);
    assert_eq!((code, err.as_str()), (1, "Error from server (NotFound): pods \"nope\" not found\n"));
    let (code, _, err) = berthctl(c, &["describe", "pods", "-l", "app=none"]);
    assert_eq!((code, err.as_str()), (0, "No resources found in default namespace.\n"));
    let generic = c.ok(&["describe", "lease", "-n", "kube-node-lease", "node-1"]);
    assert!(generic.contains("\nSpec:\n  Holder Identity:         node-1\n"), "{generic}");
    let ns = c.ok(&["describe", "namespace", "default"]);
    assert!(ns.starts_with("Name:         default\n") && ns.contains("Status:       Active\n"), "{ns}");
}

fn logs_checks(c: &CtlCluster) {
    let (code, out, err) = berthctl(c, &["logs", "two"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "from-a\n", "Defaulted container \"a\" out of: a, b\n"));
    assert_eq!(c.ok(&["logs", "two", "-c", "b"]), "from-b\n");
    assert_eq!(c.ok(&["logs", "two", "b"]), "from-b\n");
    let (code, _, err) = berthctl(c, &["logs", "two", "-c", "zz"]);
    assert_eq!((code, err.as_str()), (1, "error: container zz is not valid for pod two\n"));
    assert_eq!(c.ok(&["logs", "two", "--all-containers", "--prefix"]), "[pod/two/a] from-a\n[pod/two/b] from-b\n");

    let web_pods = kubectl_ok(c, &["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}"], None);
    let first = web_pods.split_whitespace().next().expect("a web pod").to_string();
    assert_eq!(c.ok(&["logs", &first]), "line 1\nline 2\nline 3\n");
    assert_eq!(c.ok(&["logs", &first, "--tail=1"]), "line 3\n");
    assert_eq!(c.ok(&["logs", &first, "--tail", "2"]), "line 2\nline 3\n");
    let stamped = c.ok(&["logs", &first, "--timestamps"]);
    assert!(stamped.lines().all(|l| l.split_once(' ').is_some_and(|(t, _)| t.ends_with('Z'))), "{stamped}");
    let (code, out, err) = berthctl(c, &["logs", "deployment/web"]);
    assert_eq!((code, out.as_str()), (0, "line 1\nline 2\nline 3\n"));
    assert!(err.starts_with("Found 2 pods, using pod/web-"), "{err}");
    let selected = c.ok(&["logs", "-l", "app=web", "--prefix"]);
    for pod in web_pods.split_whitespace() {
        assert!(selected.contains(&format!("[pod/{pod}/main] line 3\n")), "{selected}");
    }
    assert_eq!(selected.lines().count(), 6, "{selected}");
    let (code, _, err) = berthctl(c, &["logs"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: expected 'logs [-f] [-p] (POD | TYPE/NAME) [-c CONTAINER]'."), "{err}");

    // -f streams: read the first lines as they come, then stop the command.
    let mut follow = c.spawn(&["logs", "-f", "ticker"]);
    let mut reader = BufReader::new(follow.0.stdout.take().expect("piped stdout"));
    let mut seen = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        reader.read_line(&mut line).expect("reading followed logs");
        seen.push(line);
    }
    assert_eq!(seen, ["tick 0\n", "tick 1\n", "tick 2\n"]);
    drop(follow);

    // --previous: the container before its last restart.
    eventually(Duration::from_secs(60), "crashy restarted", || {
        let restarts = kubectl_ok(
            c,
            &["get", "pod", "crashy", "-o", "jsonpath={.status.containerStatuses[0].restartCount}"],
            None,
        );
        (restarts.trim().parse::<u32>().unwrap_or(0) >= 1).then_some(())
    });
    assert_eq!(c.ok(&["logs", "crashy", "--previous"]), "attempt\n");
    assert_eq!(c.ok(&["logs", "crashy", "-p"]), kubectl_ok(c, &["logs", "crashy", "-p"], None));
}

fn image_of(c: &CtlCluster, name: &str) -> String {
    kubectl_ok(c, &["get", "deploy", name, "-o", "jsonpath={.spec.template.spec.containers[0].image}"], None)
}

fn owned_replica_sets(c: &CtlCluster, app: &str) -> usize {
    kubectl_ok(c, &["get", "rs", "-l", &format!("app={app}"), "--no-headers"], None).lines().count()
}

fn rollout_checks(c: &CtlCluster) {
    let roll = |image: &str, cause: &str| {
        kubectl_ok(c, &["apply", "-f", "-"], Some(&rollout_deployment("roll", image, cause)));
        let out = c.ok(&["rollout", "status", "deployment/roll", "--timeout=60s"]);
        assert!(out.ends_with("deployment \"roll\" successfully rolled out\n"), "{out}");
    };
    roll("img:1", "first");
    roll("img:2", "second");
    roll("img:3", "third");
    assert_eq!(
        c.ok(&["rollout", "history", "deployment/roll"]),
        "deployment.apps/roll \nREVISION  CHANGE-CAUSE\n1         first\n2         second\n3         third\n\n"
    );
    assert_eq!(
        c.ok(&["rollout", "history", "deployment/roll"]),
        kubectl_ok(c, &["rollout", "history", "deployment/roll"], None)
    );
    let rev2 = c.ok(&["rollout", "history", "deploy", "roll", "--revision=2"]);
    assert!(rev2.starts_with("deployment.apps/roll with revision #2\nPod Template:\n"), "{rev2}");
    assert!(rev2.contains("    Image:\timg:2\n"), "{rev2}");
    assert_eq!(rev2, kubectl_ok(c, &["rollout", "history", "deploy", "roll", "--revision=2"], None));

    // undo: back to the previous revision, then to an explicit one.
    assert_eq!(c.ok(&["rollout", "undo", "deployment/roll"]), "deployment.apps/roll rolled back\n");
    c.ok(&["rollout", "status", "deployment/roll", "--timeout=60s"]);
    assert_eq!(image_of(c, "roll"), "img:2");
    assert_eq!(c.ok(&["rollout", "undo", "deployment/roll", "--to-revision=1"]), "deployment.apps/roll rolled back\n");
    c.ok(&["rollout", "status", "deployment/roll", "--timeout=60s"]);
    assert_eq!(image_of(c, "roll"), "img:1");
    let history = c.ok(&["rollout", "history", "deployment/roll"]);
    assert_eq!(
        history,
        "deployment.apps/roll \nREVISION  CHANGE-CAUSE\n3         third\n4         second\n5         first\n\n"
    );
    let (code, _, err) = berthctl(c, &["rollout", "undo", "deployment/roll", "--to-revision=9"]);
    assert_eq!((code, err.as_str()), (1, "error: unable to find specified revision 9 in history\n"));
    assert_eq!(
        c.ok(&["rollout", "undo", "deployment/roll", "--to-revision=5"]),
        "deployment.apps/roll skipped rollback (current template already matches revision 5)\n"
    );

    // restart: a new ReplicaSet with the restartedAt annotation.
    let before = owned_replica_sets(c, "roll");
    assert_eq!(c.ok(&["rollout", "restart", "deployment/roll"]), "deployment.apps/roll restarted\n");
    c.ok(&["rollout", "status", "deployment/roll", "--timeout=60s"]);
    assert_eq!(owned_replica_sets(c, "roll"), before + 1);
    let annotation = kubectl_ok(
        c,
        &[
            "get",
            "deploy",
            "roll",
            "-o",
            "jsonpath={.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}",
        ],
        None,
    );
    assert!(annotation.ends_with('Z') || annotation.contains('+'), "restartedAt: {annotation:?}");

    // pause / resume, and kubectl's errors when already in that state.
    assert_eq!(c.ok(&["rollout", "pause", "deployment/roll"]), "deployment.apps/roll paused\n");
    let (code, _, err) = berthctl(c, &["rollout", "pause", "deployment/roll"]);
    assert_eq!((code, err.as_str()), (1, "error: deployments.apps \"roll\" is already paused\n"));
    let (code, _, err) = berthctl(c, &["rollout", "restart", "deployment/roll"]);
    assert_eq!(
        (code, err.as_str()),
        (1, "error: deployments.apps \"roll\" can't restart paused deployment (run rollout resume first)\n")
    );
    assert_eq!(c.ok(&["rollout", "resume", "deployment/roll"]), "deployment.apps/roll resumed\n");
    let (code, _, err) = berthctl(c, &["rollout", "resume", "deployment/roll"]);
    assert_eq!((code, err.as_str()), (1, "error: deployments.apps \"roll\" is not paused\n"));

    // A rollout that cannot finish: no node matches the new template.
    kubectl_ok(
        c,
        &["patch", "deployment", "roll", "-p", r#"{"spec":{"template":{"spec":{"nodeSelector":{"nosuch":"node"}}}}}"#],
        None,
    );
    let (code, out, err) = berthctl(c, &["rollout", "status", "deployment/roll", "--timeout=3s"]);
    assert_eq!((code, err.as_str()), (1, "error: timed out waiting for the condition\n"), "stdout: {out}");
    // The first line may be "Waiting for deployment spec update to be observed...".
    assert!(out.contains("Waiting for deployment \"roll\" rollout to finish: "), "{out}");
    let (code, out, _) = berthctl(c, &["rollout", "status", "deployment/roll", "--watch=false"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "{out}");
    let (code, _, err) = berthctl(c, &["rollout", "status", "deployment/roll", "--revision=1"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: desired revision (1) is different from the running revision ("), "{err}");

    // A stuck rollout past its progress deadline fails rollout status at once.
    let stuck = rollout_deployment("stuck", "img:1", "stuck")
        .replace("spec:\n  replicas: 2", "spec:\n  progressDeadlineSeconds: 1\n  replicas: 2");
    let stuck = stuck.replace("containers:", "nodeSelector: {nosuch: node}\n      containers:");
    kubectl_ok(c, &["apply", "-f", "-"], Some(&stuck));
    let (code, _, err) = berthctl(c, &["rollout", "status", "deployment/stuck", "--timeout=30s"]);
    assert_eq!((code, err.as_str()), (1, "error: deployment \"stuck\" exceeded its progress deadline\n"));
    let (code, _, err) = berthctl(c, &["rollout", "status", "deployment/nope"]);
    assert_eq!((code, err.as_str()), (1, "Error from server (NotFound): deployments.apps \"nope\" not found\n"));
}
