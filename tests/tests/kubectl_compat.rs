//! The real `kubectl` against a 3-server Berth cluster (real `berth-server` processes):
//! apply (create, then update), create -f, get (wide/yaml/json, -l, -A), get -w, describe,
//! label, annotate, scale, patch (strategic, merge, json), delete (incl. -l),
//! api-resources, version — and no warnings a real cluster would not print.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_tests::{berth_cluster, NGINX_DEPLOYMENT};

struct Kubectl {
    kubeconfig: std::path::PathBuf,
}

impl Kubectl {
    fn new(dir: &std::path::Path, api_url: &str) -> Kubectl {
        let kubeconfig = dir.join("kubeconfig");
        berth_jepsen::pki::write_admin_kubeconfig(&kubeconfig, &[api_url.to_string()]).unwrap();
        Kubectl { kubeconfig }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.args(args).env("KUBECONFIG", &self.kubeconfig).env("HOME", self.kubeconfig.parent().unwrap());
        c
    }

    /// Runs kubectl; panics on failure or on any warning on stderr.
    fn ok(&self, args: &[&str]) -> String {
        self.ok_with_stdin(args, None)
    }

    /// Runs kubectl; panics on failure or unless stderr is exactly `warning` (kubectl's
    /// `Warning: …` line).
    fn ok_warned(&self, args: &[&str], warning: &str) -> String {
        let out = self.command(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "kubectl {args:?} failed: {stderr}");
        assert_eq!(stderr.trim(), format!("Warning: {warning}"), "kubectl {args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn ok_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl on PATH (scripts/prereqs installs it)");
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "kubectl {args:?} failed: {stderr}\n{stdout}");
        assert!(!stderr.to_lowercase().contains("warning"), "kubectl {args:?} warned: {stderr}");
        stdout
    }
}

/// The docs' nginx Deployment and a Service, as one multi-document file.
fn app_manifests() -> String {
    format!("{NGINX_DEPLOYMENT}---\n{SERVICE}")
}

const SERVICE: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  selector:
    app.kubernetes.io/name: MyApp
  ports:
    - protocol: TCP
      port: 80
      targetPort: 9376
"#;

const LEGACY: &str = r#"apiVersion: extensions/v1beta1
kind: Deployment
metadata:
  name: legacy
spec:
  template:
    metadata:
      labels:
        app: legacy
    spec:
      containers:
      - name: c
        image: busybox
"#;

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_works_against_a_three_server_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = berth_cluster(3, dir.path()).await;
    // Any server answers: talk to the last one.
    let k = Kubectl::new(dir.path(), &cluster.members[2].api_url);
    berth_testkit::blocking::eventually(Duration::from_secs(30), "the default namespace", || {
        k.command(&["get", "ns", "default"]).output().ok().filter(|o| o.status.success()).map(|_| ())
    });
    let manifests = dir.path().join("app.yaml");
    std::fs::write(&manifests, app_manifests()).unwrap();
    let out = k.ok(&["apply", "-f", manifests.to_str().unwrap()]);
    assert!(
        out.contains("deployment.apps/nginx-deployment created") && out.contains("service/my-service created"),
        "{out}"
    );
    std::fs::write(&manifests, app_manifests().replace("replicas: 3", "replicas: 4")).unwrap();
    let out = k.ok(&["apply", "-f", manifests.to_str().unwrap()]);
    assert!(
        out.contains("deployment.apps/nginx-deployment configured") && out.contains("service/my-service unchanged"),
        "{out}"
    );
    assert_eq!(k.ok(&["get", "deploy", "nginx-deployment", "-o", "jsonpath={.spec.replicas}"]), "4");

    let wide = k.ok(&["get", "deploy,svc", "-o", "wide"]);
    assert!(wide.contains("CONTAINERS") && wide.contains("nginx:1.14.2") && wide.contains("CLUSTER-IP"), "{wide}");
    let yaml = k.ok(&["get", "svc", "my-service", "-o", "yaml"]);
    assert!(yaml.contains("clusterIP: 10."), "{yaml}");
    let json: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "deploy", "nginx-deployment", "-o", "json"])).unwrap();
    assert_eq!(json["spec"]["strategy"]["type"], "RollingUpdate", "defaults applied");

    let pod = dir.path().join("pod.yaml");
    std::fs::write(&pod, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p1\n  labels: {tier: web}\nspec:\n  containers:\n  - name: c\n    image: busybox\n").unwrap();
    k.ok(&["create", "-f", pod.to_str().unwrap()]);
    let all = k.ok(&["get", "pods", "-A", "-l", "tier=web"]);
    assert!(all.contains("NAMESPACE") && all.contains("p1") && all.contains("Pending"), "{all}");

    // get -w sees a change made after it started.
    let mut watch = k
        .command(&["get", "pods", "-w", "--request-timeout=20s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Lines arrive through a reader thread so every wait is bounded.
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let next_p1 = |what: &str| loop {
        match lines.recv_timeout(Duration::from_secs(15)) {
            Ok(line) if line.contains("p1") => return line,
            Ok(_) => continue,
            Err(e) => panic!("get -w: no {what} line for p1: {e}"),
        }
    };
    next_p1("listed");
    k.ok(&["label", "pod", "p1", "watched=yes"]);
    next_p1("watched");
    let _ = watch.kill();
    let _ = watch.wait();

    let described = k.ok(&["describe", "deploy", "nginx-deployment"]);
    assert!(described.contains("Replicas:") && described.contains("RollingUpdate"), "{described}");
    k.ok(&["label", "deploy", "nginx-deployment", "tier=web"]);
    k.ok(&["annotate", "deploy", "nginx-deployment", "note=hello"]);
    k.ok(&["scale", "deploy", "nginx-deployment", "--replicas=2"]);
    assert_eq!(k.ok(&["get", "deploy", "nginx-deployment", "-o", "jsonpath={.spec.replicas}"]), "2");
    k.ok(&[
        "patch",
        "deploy",
        "nginx-deployment",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.16"}]}}}}"#,
    ]);
    k.ok(&["patch", "deploy", "nginx-deployment", "--type=merge", "-p", r#"{"metadata":{"labels":{"m":"1"}}}"#]);
    k.ok(&[
        "patch",
        "deploy",
        "nginx-deployment",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":5}]"#,
    ]);
    let after = k.ok(&["get", "deploy", "nginx-deployment", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort} {.metadata.labels.m}"]);
    assert_eq!(after, "5 nginx:1.16 80 1", "strategic patch merged the container by name");

    // Old extensions/v1beta1 manifests apply and are served as apps/v1, with
    // kube-apiserver's deprecation warning (Kubernetes >= 1.16 refuses them).
    let legacy = dir.path().join("legacy.yaml");
    std::fs::write(&legacy, LEGACY).unwrap();
    k.ok_warned(
        &["apply", "-f", legacy.to_str().unwrap()],
        "extensions/v1beta1 Deployment is deprecated in v1.9+, unavailable in v1.16+; use apps/v1 Deployment \
         (Berth stores it as apps/v1 Deployment)",
    );
    assert_eq!(
        k.ok(&["get", "deploy", "legacy", "-o", "jsonpath={.apiVersion} {.spec.selector.matchLabels.app}"]),
        "apps/v1 legacy"
    );

    let resources = k.ok(&["api-resources"]);
    for line in [
        "pods",
        "po",
        "deployments",
        "deploy",
        "replicasets",
        "rs",
        "services",
        "svc",
        "namespaces",
        "ns",
        "configmaps",
        "cm",
    ] {
        assert!(resources.split_whitespace().any(|w| w == line), "api-resources lacks {line}: {resources}");
    }
    let version = k.ok(&["version"]);
    assert!(version.contains("Server Version: v1.33"), "{version}");

    k.ok(&["delete", "pods", "-l", "tier=web"]);
    assert!(!k.ok(&["get", "pods"]).contains("p1"));
    k.ok(&["delete", "-f", manifests.to_str().unwrap()]);
    k.ok(&["delete", "deploy", "legacy"]);
    let left = k.ok(&["get", "deploy,svc", "-o", "name"]);
    // The `kubernetes` Service is the control plane's own, as in Kubernetes.
    assert_eq!(left.trim(), "service/kubernetes", "left over: {left}");
}
