//! metrics.k8s.io, `top` and the HorizontalPodAutoscaler on real processes: `berth-server`
//! scrapes a real `berth-agent --runtime process` whose containers are host processes, so
//! the CPU figures are real (a busy-looping `sh` burns a core); `berthctl top` and the real
//! `kubectl top` print them alike; an HPA scales a CPU-burning Deployment up, and back down
//! once its template stops burning.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_testkit::blocking::eventually;
use berth_tests::berthctl::{run_bounded, Agent, CtlCluster};
use serde_json::Value;

/// One replica that busy-loops (100m requested: one burning core is ~1000% of it).
const BURNER: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: burn}
spec:
  replicas: 1
  selector: {matchLabels: {app: burn}}
  template:
    metadata: {labels: {app: burn}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: burn
        image: busybox
        command: ["sh", "-c", "while :; do :; done"]
        resources: {requests: {cpu: 100m}}
"#;

/// A pod that only sleeps: next to the burner, its CPU shows the figures are measured.
const IDLE: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: idle, labels: {app: idle}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: idle
    image: busybox
    command: ["sh", "-c", "sleep 3600"]
"#;

const HPA: &str = r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: burn}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: burn}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 5}
"#;

/// Runs the real kubectl against `kubeconfig`: (success, stdout, stderr).
fn kubectl(kubeconfig: &Path, home: &Path, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new("kubectl");
    cmd.args(args).env("KUBECONFIG", kubeconfig).env("HOME", home).stdin(Stdio::piped());
    let out = run_bounded(cmd, None, Duration::from_secs(60));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn kubectl_ok(c: &CtlCluster, args: &[&str]) -> String {
    let (ok, out, err) = kubectl(&c.kubeconfig, &c.dir, args);
    assert!(ok, "kubectl {args:?}: {err}");
    out
}

/// Millicores of a `top` CPU cell (`532m`).
fn millicores(cell: &str) -> Option<u64> {
    cell.strip_suffix('m')?.parse().ok()
}

/// The row of `top` output whose first cell starts with `prefix`.
fn row<'a>(out: &'a str, prefix: &str) -> Option<Vec<&'a str>> {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|r| r.first().is_some_and(|c| c.starts_with(prefix)))
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn top_reports_real_usage_from_every_server_like_kubectl() {
    let mut c = CtlCluster::start_with_server_args(3, Agent::None, &["--metric-resolution", "2s"]).await;
    assert!(kubectl_ok(&c, &["api-versions"]).lines().any(|l| l == "metrics.k8s.io/v1beta1"));

    // Nothing measured yet: kubectl's errors.
    let (_, err) = c.fails(&["top", "nodes"]);
    assert_eq!(err.trim(), "error: metrics not available yet");
    c.ok_stdin(&["apply", "-f", "-"], BURNER);
    c.ok_stdin(&["apply", "-f", "-"], IDLE);
    eventually(Duration::from_secs(20), "the burner pod", || {
        c.try_ok(&["get", "pods", "-l", "app=burn", "-o", "name"]).ok().filter(|o| !o.trim().is_empty())
    });
    let (_, err) = c.fails(&["top", "pods"]);
    assert_eq!(err.trim(), "error: metrics not available yet");
    let (ok, _, kubectl_err) = kubectl(&c.kubeconfig, &c.dir, &["top", "pods"]);
    assert!(!ok);
    assert_eq!(kubectl_err.trim(), "error: metrics not available yet");
    let (_, err) = c.fails(&["top", "pods", "--sort-by", "disk"]);
    assert_eq!(err.trim(), "error: --sort-by accepts only cpu or memory");

    // An agent runs the burner: real CPU shows up.
    c.start_agent_on(Agent::Process, 0);
    let burner = eventually(Duration::from_secs(60), "the burner's CPU in berthctl top pods", || {
        let out = c.try_ok(&["top", "pods", "--no-headers"]).ok()?;
        let r = row(&out, "burn-")?;
        (millicores(r[1])? >= 50).then(|| r[0].to_string())
    });
    let idle = eventually(Duration::from_secs(30), "the idle pod in top", || {
        let out = c.try_ok(&["top", "pod", "idle", "--no-headers"]).ok()?;
        millicores(row(&out, "idle")?[1])
    });
    assert!(idle < 20, "a sleeping pod uses (almost) no CPU: {idle}m");
    let pods = c.ok(&["top", "pods", "-l", "app=burn"]);
    assert_eq!(
        pods.lines().next().map(str::trim_end),
        Some(format!("NAME{}CPU(cores)   MEMORY(bytes)", " ".repeat(burner.len() - 1)).as_str()),
        "{pods}"
    );

    // kubectl prints the same table (figures move between two calls, the layout does not).
    let nodes = c.ok(&["top", "nodes"]);
    let k_nodes = kubectl_ok(&c, &["top", "nodes"]);
    assert_eq!(nodes.lines().next(), k_nodes.lines().next(), "berthctl:\n{nodes}\nkubectl:\n{k_nodes}");
    assert_eq!(nodes.lines().next(), Some("NAME     CPU(cores)   CPU(%)   MEMORY(bytes)   MEMORY(%)   "));
    for out in [&nodes, &k_nodes] {
        let r = row(out, "node-1").unwrap_or_else(|| panic!("node-1 in {out}"));
        assert_eq!(r.len(), 5, "{out}");
        assert!(millicores(r[1]).is_some_and(|m| m > 0), "{out}");
        assert!(r[2].ends_with('%') && r[3].ends_with("Mi") && r[4].ends_with('%'), "{out}");
        assert!(r[3].trim_end_matches("Mi").parse::<u64>().is_ok_and(|mi| mi > 0), "{out}");
    }
    let k_pods = kubectl_ok(&c, &["top", "pods", "-A", "--containers", "-l", "app=burn"]);
    let b_pods = c.ok(&["top", "pods", "-A", "--containers", "-l", "app=burn"]);
    assert_eq!(k_pods.lines().next(), b_pods.lines().next(), "berthctl:\n{b_pods}\nkubectl:\n{k_pods}");
    for out in [&k_pods, &b_pods] {
        let r = row(out, "default").unwrap_or_else(|| panic!("the burner in {out}"));
        assert_eq!((r[1], r[2]), (burner.as_str(), "burn"), "{out}");
        assert!(millicores(r[3]).is_some_and(|m| m >= 50), "{out}");
        assert!(r[4].ends_with("Mi"), "{out}");
    }
    assert_eq!(c.ok(&["top", "pods", "-l", "app=nothing"]), "", "no pods: nothing on stdout");
    // `get podmetrics` shows metrics-server's Table columns.
    let table = kubectl_ok(&c, &["get", "podmetrics", "-l", "app=burn"]);
    assert_eq!(
        table.lines().next().map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["NAME", "CPU", "MEMORY", "WINDOW"])
    );
    assert!(row(&table, &burner).is_some_and(|r| r[1].ends_with('n') && r[3].ends_with('s')), "{table}");
    let (_, err) = c.fails(&["top", "pod", "nope"]);
    assert_eq!(err.trim(), "Error from server (NotFound): podmetrics.metrics.k8s.io \"default/nope\" not found");

    // berthctl's autoscale (JSON), as kubectl's (protobuf, control/tests/protobuf.rs).
    let out = c.ok(&["autoscale", "deployment", "burn", "--min=1", "--max=2", "--cpu-percent=80"]);
    assert_eq!(out, "horizontalpodautoscaler.autoscaling/burn autoscaled\n");
    let hpa = json(&c.ok(&["get", "hpa", "burn", "-o", "json"]));
    assert_eq!(
        hpa["spec"]["scaleTargetRef"],
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "burn"})
    );
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 80);
    let (_, err) = c.fails(&["autoscale", "deployment", "burn"]);
    assert_eq!(err.trim(), "error: --max=MAXPODS is required and must be at least 1, max: -1");

    // Every server answers from its own scrapes, with metrics-server's objects.
    for i in 0..3 {
        let kubeconfig = c.kubeconfig_preferring(i);
        // Each server scrapes on its own schedule: allow it a couple of periods.
        let path = format!("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/{burner}");
        let mut last_error = String::new();
        let m = eventually(Duration::from_secs(15), &format!("server {i} to serve the burner's metrics"), || {
            let (ok, out, err) = kubectl(&kubeconfig, &c.dir, &["get", "--raw", &path]);
            last_error = err;
            ok.then(|| json(&out))
        });
        assert_eq!(m["kind"], "PodMetrics", "server {i}: {last_error}");
        assert_eq!(m["metadata"]["labels"]["app"], "burn");
        let cpu = m["containers"][0]["usage"]["cpu"].as_str().unwrap();
        assert!(cpu.ends_with('n') || cpu.ends_with('u') || cpu.ends_with('m'), "metrics-server's CPU form: {cpu}");
        assert!(m["window"].as_str().unwrap().ends_with('s'), "{m}");
        let (ok, out, err) = kubectl(&kubeconfig, &c.dir, &["top", "node", "node-1", "--no-headers"]);
        assert!(ok && out.starts_with("node-1 "), "server {i}: {out}{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hpa_scales_a_cpu_burner_up_and_back_down() {
    let c = CtlCluster::start_with_server_args(
        1,
        Agent::Process,
        &["--metric-resolution", "2s", "--horizontal-pod-autoscaler-sync-period", "2s"],
    )
    .await;
    c.ok_stdin(&["apply", "-f", "-"], BURNER);
    c.ok_stdin(&["apply", "-f", "-"], HPA);
    let replicas = || c.try_ok(&["get", "deployment", "burn", "-o", "jsonpath={.spec.replicas}"]).unwrap_or_default();

    // One core burning against 100m requested: far above 50%, so up to maxReplicas.
    eventually(Duration::from_secs(60), "the HPA to scale the burner to 3", || (replicas() == "3").then_some(()));
    let hpa = json(&c.ok(&["get", "hpa", "burn", "-o", "json"]));
    let status = &hpa["status"];
    assert_eq!(status["desiredReplicas"], 3, "{status}");
    assert!(status["lastScaleTime"].is_string(), "{status}");
    assert_eq!(status["observedGeneration"], hpa["metadata"]["generation"]);
    let current = &status["currentMetrics"][0]["resource"];
    assert_eq!(current["name"], "cpu");
    assert!(current["current"]["averageUtilization"].as_i64().is_some_and(|u| u > 50), "{status}");
    let condition = |name: &str| {
        status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == name).cloned().unwrap_or_default()
    };
    assert_eq!(condition("AbleToScale")["status"], "True", "{status}");
    assert_eq!(condition("ScalingActive")["reason"], "ValidMetricFound", "{status}");
    assert_eq!(
        condition("ScalingActive")["message"],
        "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)"
    );
    let events = || {
        let list = json(&c.ok(&["get", "events", "--field-selector", "involvedObject.name=burn", "-o", "json"]));
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["reason"] == "SuccessfulRescale" && e["involvedObject"]["kind"] == "HorizontalPodAutoscaler")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    let up = events();
    assert!(
        up.iter().any(|m| m.starts_with("New size: ")
            && m.ends_with("; reason: cpu resource utilization (percentage of request) above target")),
        "{up:?}"
    );
    let table = kubectl_ok(&c, &["get", "hpa", "burn", "--no-headers"]);
    assert!(table.contains("Deployment/burn") && table.contains("%/50%"), "{table}");

    // Stop burning: the new template's pods sleep; usage falls and, after the 5 s
    // stabilization window, the HPA scales back to minReplicas.
    kubectl_ok(
        &c,
        &[
            "patch",
            "deployment",
            "burn",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/template/spec/containers/0/command","value":["sh","-c","sleep 3600"]}]"#,
        ],
    );
    eventually(Duration::from_secs(90), "the HPA to scale back to 1", || (replicas() == "1").then_some(()));
    let down = events();
    assert!(down.iter().any(|m| m.ends_with("; reason: All metrics below target")), "{down:?}");
    let hpa = json(&c.ok(&["get", "hpa", "burn", "-o", "json"]));
    assert_eq!(hpa["status"]["desiredReplicas"], 1, "{}", hpa["status"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn hollow_pods_report_zero_usage() {
    let c = CtlCluster::start_with_server_args(1, Agent::Fake(2), &["--metric-resolution", "2s"]).await;
    c.ok(&["create", "deployment", "idle", "--image=busybox", "--replicas=2"]);
    // Nothing runs in a hollow pod: measured, and zero.
    let out = eventually(Duration::from_secs(60), "hollow pods in top", || {
        let out = c.try_ok(&["top", "pods", "--no-headers"]).ok()?;
        (out.lines().count() == 2).then_some(out)
    });
    for line in out.lines() {
        let r: Vec<&str> = line.split_whitespace().collect();
        assert!(r[0].starts_with("idle-") && r[1] == "0m" && r[2] == "0Mi", "{out}");
    }
}
