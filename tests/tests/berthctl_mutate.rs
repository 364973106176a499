//! `berthctl`'s verbs that change objects, black-box against 3 real servers and a fake-runtime
//! agent with two nodes: apply (the Kubernetes docs' nginx Deployment: created → unchanged →
//! configured → fields removed; multi-document stdin, `kind: List`, directories, `-R`,
//! `--server-side`, namespace mismatch), create (-f, deployment, namespace), run, expose,
//! label/annotate, scale, set image, edit (through an `EDITOR` script), taint, cordon/uncordon,
//! drain (evictions; managed pods come back elsewhere, an unmanaged pod is refused without
//! --force) and delete (-f, -l, --all, --cascade=orphan, --force, --ignore-not-found), with
//! kubectl's messages and error lines. Objects are checked through the REST API directly, so a
//! failure here points at the mutating verbs and not at `get`.

use std::time::Duration;

use berth_testkit::blocking::eventually;
use berth_tests::berthctl::{run_bounded, Agent, CtlCluster};
use berth_tests::NGINX_DEPLOYMENT as NGINX;
use serde_json::Value;

/// GET on the cluster's API as its administrator: the object, or None on 404.
fn api(c: &CtlCluster, path: &str) -> Option<Value> {
    let url = &c.api_urls()[0];
    let (status, body) = berth_tests::api_get(url, path, Some(berth_jepsen::pki::admin())).expect("reaching the API");
    if status == 404 {
        return None;
    }
    assert_eq!(status, 200, "GET {path}: {body}");
    Some(serde_json::from_str(&body).expect("a JSON body"))
}

fn names(list: &Value) -> Vec<String> {
    let mut v: Vec<String> =
        list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()).collect();
    v.sort();
    v
}

/// berthctl with `EDITOR` set; (exit code, stdout, stderr).
fn with_editor(c: &CtlCluster, editor: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = c.command(args);
    cmd.env("EDITOR", editor).env_remove("KUBE_EDITOR");
    let out = run_bounded(cmd, None, Duration::from_secs(60));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn script(c: &CtlCluster, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = c.dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

const DEPLOY: &str = "/apis/apps/v1/namespaces/default/deployments";

#[tokio::test(flavor = "multi_thread")]
async fn berthctl_changes_objects_like_kubectl() {
    let c = CtlCluster::start(3, Agent::Fake(2)).await;
    apply(&c);
    create_run_expose(&c);
    label_annotate_scale_set(&c);
    edit(&c);
    nodes(&c);
    delete(&c);
    failover(c);
}

/// The kubeconfig lists server 0 first; with it gone, every verb goes to the next server.
fn failover(mut c: CtlCluster) {
    c.servers.members[0].kill();
    let cm = c.dir.join("failover.yaml");
    std::fs::write(&cm, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: failover}\ndata: {a: '1'}\n").unwrap();
    let f = cm.to_str().unwrap();
    // Losing a server may cost the cluster an election before writes go through again.
    eventually(Duration::from_secs(30), "a write after losing server 0", || c.try_ok(&["apply", "-f", f]).ok());
    assert_eq!(c.ok(&["apply", "-f", f]), "configmap/failover unchanged\n");
    assert_eq!(c.ok(&["label", "configmap", "failover", "moved=yes"]), "configmap/failover labeled\n");
    assert_eq!(c.ok(&["annotate", "-f", f, "note=x"]), "configmap/failover annotated\n");
    assert_eq!(c.ok(&["delete", "-f", f]), "configmap \"failover\" deleted\n");
}

fn apply(c: &CtlCluster) {
    let file = c.dir.join("nginx.yaml");
    let f = file.to_str().unwrap();
    std::fs::write(&file, NGINX).unwrap();
    assert_eq!(c.ok(&["apply", "-f", f]), "deployment.apps/nginx-deployment created\n");
    assert_eq!(c.ok(&["apply", "-f", f]), "deployment.apps/nginx-deployment unchanged\n");
    let d = api(c, &format!("{DEPLOY}/nginx-deployment")).unwrap();
    // The annotation is byte-for-byte what kubectl writes for this manifest.
    assert_eq!(
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"annotations\":{},\"labels\":{\"app\":\"nginx\"},\"name\":\"nginx-deployment\",\"namespace\":\"default\"},\"spec\":{\"replicas\":3,\"selector\":{\"matchLabels\":{\"app\":\"nginx\"}},\"template\":{\"metadata\":{\"labels\":{\"app\":\"nginx\"}},\"spec\":{\"containers\":[{\"image\":\"nginx:1.14.2\",\"name\":\"nginx\",\"ports\":[{\"containerPort\":80}]}]}}}}\n"
    );

    // Edit the manifest: configured.
    std::fs::write(&file, NGINX.replace("replicas: 3", "replicas: 2")).unwrap();
    assert_eq!(c.ok(&["apply", "-f", f]), "deployment.apps/nginx-deployment configured\n");
    assert_eq!(api(c, &format!("{DEPLOY}/nginx-deployment")).unwrap()["spec"]["replicas"], 2);

    // Fields removed from the manifest go: the object's labels and the container's ports.
    let trimmed = NGINX
        .replace("replicas: 3", "replicas: 2")
        .replace("  labels:\n    app: nginx\nspec:", "spec:")
        .replace("        ports:\n        - containerPort: 80\n", "");
    std::fs::write(&file, &trimmed).unwrap();
    assert_eq!(c.ok(&["apply", "-f", f]), "deployment.apps/nginx-deployment configured\n");
    let d = api(c, &format!("{DEPLOY}/nginx-deployment")).unwrap();
    assert!(d["metadata"].get("labels").is_none(), "labels left: {}", d["metadata"]);
    assert!(d["spec"]["template"]["spec"]["containers"][0].get("ports").is_none());
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.14.2");
    assert_eq!(c.ok(&["apply", "-f", f]), "deployment.apps/nginx-deployment unchanged\n");

    // Another writer changes replicas; re-applying the manifest wins, as client-side apply does.
    assert_eq!(
        c.ok(&["scale", "deployment", "nginx-deployment", "--replicas=5"]),
        "deployment.apps/nginx-deployment scaled\n"
    );
    std::fs::write(&file, NGINX).unwrap();
    assert_eq!(c.ok(&["apply", "-f", f, "-o", "name"]), "deployment.apps/nginx-deployment\n");
    let d = api(c, &format!("{DEPLOY}/nginx-deployment")).unwrap();
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["labels"]["app"], "nginx");
    assert_eq!(
        c.ok(&["apply", "-f", f, "--dry-run=server"]),
        "deployment.apps/nginx-deployment unchanged (server dry run)\n"
    );
    assert_eq!(c.ok(&["apply", "-f", f, "--server-side"]), "deployment.apps/nginx-deployment serverside-applied\n");
    // Server-side apply reports a field another manager owns, unless forced.
    let ssa = c.dir.join("nginx-ssa.yaml");
    std::fs::write(&ssa, NGINX.replace("replicas: 3", "replicas: 4")).unwrap();
    let (code, stderr) = c.fails(&["apply", "--server-side", "-f", ssa.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.starts_with("error: Apply failed with 1 conflict"), "{stderr}");
    assert!(stderr.contains("\"kubectl-client-side-apply\"") && stderr.contains(".spec.replicas"), "{stderr}");
    assert!(stderr.contains("command with the `--force-conflicts` flag."), "{stderr}");
    assert_eq!(
        c.ok(&["apply", "--server-side", "--force-conflicts", "-f", ssa.to_str().unwrap()]),
        "deployment.apps/nginx-deployment serverside-applied\n"
    );
    assert_eq!(api(c, &format!("{DEPLOY}/nginx-deployment")).unwrap()["spec"]["replicas"], 4);

    // An explicit -n that contradicts the manifest.
    let other = c.dir.join("other-ns.yaml");
    std::fs::write(
        &other,
        NGINX.replace("  name: nginx-deployment\n", "  name: nginx-deployment\n  namespace: other\n"),
    )
    .unwrap();
    let (code, stderr) = c.fails(&["apply", "-f", other.to_str().unwrap(), "-n", "default"]);
    assert_eq!(code, 1);
    assert_eq!(stderr, "error: the namespace from the provided object \"other\" does not match the namespace \"default\". You must pass '--namespace=other' to perform this operation.\n");

    // Multi-document YAML with a List, on stdin.
    let multi = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-a\n  labels: {group: demo}\ndata: {k: a}\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: cm-b, labels: {group: demo}}\n  data: {k: b}\n- apiVersion: v1\n  kind: Service\n  metadata: {name: svc-b}\n  spec:\n    selector: {app: b}\n    ports: [{port: 80}]\n";
    assert_eq!(
        c.ok_stdin(&["apply", "-f", "-"], multi),
        "configmap/cm-a created\nconfigmap/cm-b created\nservice/svc-b created\n"
    );
    assert_eq!(
        c.ok_stdin(&["apply", "-f", "-"], &multi.replace("{k: b}", "{k: b2}")),
        "configmap/cm-a unchanged\nconfigmap/cm-b configured\nservice/svc-b unchanged\n"
    );
    assert_eq!(api(c, "/api/v1/namespaces/default/configmaps/cm-b").unwrap()["data"]["k"], "b2");

    // Directories: .yaml/.yml/.json in name order, subdirectories only with -R.
    let dir = c.dir.join("manifests");
    std::fs::create_dir_all(dir.join("nested")).unwrap();
    std::fs::write(
        dir.join("b.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dir-b, labels: {group: demo}}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("a.json"),
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dir-a", "labels": {"group": "demo"}}}"#,
    )
    .unwrap();
    std::fs::write(dir.join("README.md"), "not a manifest").unwrap();
    std::fs::write(
        dir.join("nested/c.yml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dir-c, labels: {group: demo}}\n",
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    assert_eq!(c.ok(&["apply", "-f", d]), "configmap/dir-a created\nconfigmap/dir-b created\n");
    assert_eq!(
        c.ok(&["apply", "-R", "-f", d]),
        "configmap/dir-a unchanged\nconfigmap/dir-b unchanged\nconfigmap/dir-c created\n"
    );
}

fn create_run_expose(c: &CtlCluster) {
    let cm = c.dir.join("cm.yaml");
    std::fs::write(&cm, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: created-cm}\ndata: {a: '1'}\n").unwrap();
    let f = cm.to_str().unwrap();
    assert_eq!(c.ok(&["create", "-f", f]), "configmap/created-cm created\n");
    let (code, stderr) = c.fails(&["create", "-f", f]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        format!("Error from server (AlreadyExists): error when creating \"{f}\": configmaps \"created-cm\" already exists\n")
    );

    assert_eq!(
        c.ok(&["create", "deployment", "web", "--image=nginx:1.25", "--replicas=2", "--port=80"]),
        "deployment.apps/web created\n"
    );
    let web = api(c, &format!("{DEPLOY}/web")).unwrap();
    assert_eq!(web["metadata"]["labels"]["app"], "web");
    assert_eq!(web["spec"]["selector"]["matchLabels"]["app"], "web");
    assert_eq!(web["spec"]["replicas"], 2);
    let container = &web["spec"]["template"]["spec"]["containers"][0];
    assert_eq!((container["name"].as_str(), container["image"].as_str()), (Some("nginx"), Some("nginx:1.25")));
    assert_eq!(container["ports"][0]["containerPort"], 80);
    assert_eq!(c.ok(&["create", "namespace", "team-a"]), "namespace/team-a created\n");

    assert_eq!(
        c.ok(&[
            "run",
            "solo",
            "--image=busybox",
            "--env=GREETING=hi",
            "--restart=Never",
            "--overrides={\"spec\":{\"nodeName\":\"hollow-1\"}}",
            "--",
            "echo",
            "hi"
        ]),
        "pod/solo created\n"
    );
    let pod = api(c, "/api/v1/namespaces/default/pods/solo").unwrap();
    assert_eq!(pod["metadata"]["labels"]["run"], "solo");
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert_eq!(pod["spec"]["containers"][0]["args"], serde_json::json!(["echo", "hi"]));
    assert_eq!(pod["spec"]["containers"][0]["env"][0]["value"], "hi");
    assert_eq!(pod["spec"]["nodeName"], "hollow-1");
    let (code, stderr) = c.fails(&["run", "solo", "--image=busybox"]);
    assert_eq!((code, stderr.as_str()), (1, "Error from server (AlreadyExists): pods \"solo\" already exists\n"));

    assert_eq!(c.ok(&["expose", "deployment", "web", "--port=8080", "--target-port=80"]), "service/web exposed\n");
    let svc = api(c, "/api/v1/namespaces/default/services/web").unwrap();
    assert_eq!(svc["spec"]["selector"], serde_json::json!({"app": "web"}));
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
    // Ports found by introspection.
    assert_eq!(c.ok(&["expose", "deploy/web", "--name=web-auto"]), "service/web-auto exposed\n");
    assert_eq!(api(c, "/api/v1/namespaces/default/services/web-auto").unwrap()["spec"]["ports"][0]["port"], 80);
    let (code, stderr) = c.fails(&["expose", "pod", "solo"]);
    assert_eq!((code, stderr.as_str()), (1, "error: couldn't find port via --port flag or introspection\n"));
}

fn label_annotate_scale_set(c: &CtlCluster) {
    let pod = || api(c, "/api/v1/namespaces/default/pods/solo").unwrap();
    assert_eq!(c.ok(&["label", "pod", "solo", "tier=web"]), "pod/solo labeled\n");
    let (code, stderr) = c.fails(&["label", "pod", "solo", "tier=db"]);
    assert_eq!((code, stderr.as_str()), (1, "error: 'tier' already has a value (web), and --overwrite is false\n"));
    assert_eq!(c.ok(&["label", "pods/solo", "tier=db", "--overwrite"]), "pod/solo labeled\n");
    assert_eq!(pod()["metadata"]["labels"]["tier"], "db");
    assert_eq!(c.ok(&["label", "pod", "solo", "tier=db", "--overwrite"]), "pod/solo not labeled\n");
    assert_eq!(c.ok(&["label", "pod", "solo", "tier-", "nope-"]), "label \"nope\" not found.\npod/solo unlabeled\n");
    assert!(pod()["metadata"]["labels"].get("tier").is_none());
    assert_eq!(c.ok(&["label", "pod", "solo", "--list"]), "run=solo\n");

    assert_eq!(c.ok(&["annotate", "pod", "solo", "note=first"]), "pod/solo annotated\n");
    let (code, stderr) = c.fails(&["annotate", "pod", "solo", "note=second"]);
    assert_eq!(
        (code, stderr.as_str()),
        (1, "error: --overwrite is false but found the following declared annotation(s): 'note' already has a value (first)\n")
    );
    assert_eq!(c.ok(&["annotate", "pod", "solo", "note=second", "--overwrite"]), "pod/solo annotated\n");
    assert_eq!(pod()["metadata"]["annotations"]["note"], "second");
    assert_eq!(c.ok(&["annotate", "pod", "solo", "note-"]), "pod/solo annotated\n");
    assert!(pod()["metadata"]["annotations"].get("note").is_none());
    // -l over several objects.
    assert_eq!(
        c.ok(&["label", "configmaps", "-l", "group=demo", "checked=yes"]),
        "configmap/cm-a labeled\nconfigmap/cm-b labeled\nconfigmap/dir-a labeled\nconfigmap/dir-b labeled\nconfigmap/dir-c labeled\n"
    );

    assert_eq!(c.ok(&["scale", "deployment", "web", "--replicas=3"]), "deployment.apps/web scaled\n");
    assert_eq!(api(c, &format!("{DEPLOY}/web")).unwrap()["spec"]["replicas"], 3);
    let (code, stderr) = c.fails(&["scale", "deploy/web", "--replicas=1", "--current-replicas=2"]);
    assert_eq!((code, stderr.as_str()), (1, "error: Expected replicas to be 2, was 3\n"));

    assert_eq!(c.ok(&["set", "image", "deployment/web", "nginx=nginx:1.26"]), "deployment.apps/web image updated\n");
    assert_eq!(
        api(c, &format!("{DEPLOY}/web")).unwrap()["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.26"
    );
    assert_eq!(c.ok(&["set", "image", "deployment/web", "nginx=nginx:1.26"]), "");
    let (code, stderr) = c.fails(&["set", "image", "deployment/web", "sidecar=envoy"]);
    assert_eq!((code, stderr.as_str()), (1, "error: unable to find container named \"sidecar\"\n"));
}

fn edit(c: &CtlCluster) {
    let retag = script(c, "retag.sh", "sed -i 's/image: nginx:1.26/image: nginx:edited/' \"$1\"");
    let (code, stdout, stderr) = with_editor(c, &retag, &["edit", "deployment", "web"]);
    assert_eq!((code, stdout.as_str()), (0, "deployment.apps/web edited\n"), "{stderr}");
    assert_eq!(
        api(c, &format!("{DEPLOY}/web")).unwrap()["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:edited"
    );

    let (code, stdout, stderr) = with_editor(c, "true", &["edit", "deploy/web"]);
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (0, "", "Edit cancelled, no changes made.\n"));

    // An invalid edit: the editor reopens with the reasons; saving the same again gives up and
    // keeps the file.
    let invalid = script(c, "invalid.sh", "sed -i 's/^  replicas: .*/  replicas: -1/' \"$1\"");
    let (code, _, stderr) = with_editor(c, &invalid, &["edit", "deployment", "web"]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines[0], "error: deployments.apps \"web\" is invalid");
    assert!(lines[1].starts_with("A copy of your changes has been stored to \""), "{stderr}");
    assert_eq!(lines[2], "error: Edit cancelled, no valid changes were saved.");
    let kept = lines[1].trim_start_matches("A copy of your changes has been stored to \"").trim_end_matches('"');
    let text = std::fs::read_to_string(kept).expect("the edited file is kept");
    assert!(text.contains("# deployments.apps \"web\" was not valid:") && text.contains("  replicas: -1"), "{text}");
    std::fs::remove_file(kept).unwrap();

    // Renaming the object in the editor is refused, with the file kept.
    let rename = script(c, "rename.sh", "sed -i 's/^  name: web$/  name: renamed/' \"$1\"");
    let (code, _, stderr) = with_editor(c, &rename, &["edit", "deployment", "web"]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines[0].starts_with("A copy of your changes has been stored to \""), "{stderr}");
    assert_eq!(lines[1], "error: At least one of apiVersion, kind and name was changed");
    std::fs::remove_file(
        lines[0].trim_start_matches("A copy of your changes has been stored to \"").trim_end_matches('"'),
    )
    .unwrap();
    assert_eq!(api(c, &format!("{DEPLOY}/web")).unwrap()["spec"]["replicas"], 3);
}

fn nodes(c: &CtlCluster) {
    let node = |n: &str| api(c, &format!("/api/v1/nodes/{n}")).unwrap();
    assert_eq!(c.ok(&["taint", "nodes", "hollow-0", "dedicated=infra:NoSchedule"]), "node/hollow-0 tainted\n");
    assert_eq!(
        node("hollow-0")["spec"]["taints"],
        serde_json::json!([{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}])
    );
    let (code, stderr) = c.fails(&["taint", "nodes", "hollow-0", "dedicated=other:NoSchedule"]);
    assert_eq!(
        (code, stderr.as_str()),
        (1, "error: node hollow-0 already has dedicated taint(s) with same effect(s) and --overwrite is false\n")
    );
    assert_eq!(
        c.ok(&["taint", "node/hollow-0", "dedicated=other:NoSchedule", "--overwrite"]),
        "node/hollow-0 modified\n"
    );
    assert_eq!(c.ok(&["taint", "nodes", "hollow-0", "dedicated-"]), "node/hollow-0 untainted\n");
    assert!(node("hollow-0")["spec"]["taints"].as_array().is_none_or(|t| t.is_empty()));
    let (code, stderr) = c.fails(&["taint", "nodes", "hollow-0", "dedicated:NoSchedule-"]);
    assert_eq!((code, stderr.as_str()), (1, "error: taint \"dedicated:NoSchedule\" not found\n"));

    assert_eq!(c.ok(&["cordon", "hollow-1"]), "node/hollow-1 cordoned\n");
    assert_eq!(node("hollow-1")["spec"]["unschedulable"], true);
    assert_eq!(c.ok(&["cordon", "hollow-1"]), "node/hollow-1 already cordoned\n");
    assert_eq!(c.ok(&["uncordon", "hollow-1"]), "node/hollow-1 uncordoned\n");
    assert!(node("hollow-1")["spec"].get("unschedulable").is_none());
    assert_eq!(c.ok(&["uncordon", "hollow-1"]), "node/hollow-1 already uncordoned\n");

    // Drain hollow-0: put the deployment's pods (rescheduled while hollow-1 is cordoned) and
    // an unmanaged pod on it first.
    let pods_on = |n: &str| {
        let path = format!("/api/v1/namespaces/default/pods?labelSelector=app%3Dweb&fieldSelector=spec.nodeName%3D{n}");
        names(&api(c, &path).unwrap())
    };
    c.ok(&["cordon", "hollow-1"]);
    c.ok(&["scale", "deployment", "web", "--replicas=0"]);
    eventually(Duration::from_secs(30), "web scaled to 0", || {
        (pods_on("hollow-0").is_empty() && pods_on("hollow-1").is_empty()).then_some(())
    });
    c.ok(&["scale", "deployment", "web", "--replicas=3"]);
    eventually(Duration::from_secs(30), "web pods on hollow-0", || (pods_on("hollow-0").len() == 3).then_some(()));
    c.ok(&["run", "loner", "--image=busybox", "--overrides={\"spec\":{\"nodeName\":\"hollow-0\"}}"]);
    c.ok(&["uncordon", "hollow-1"]);

    let out = c.run(&["drain", "hollow-0"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "node/hollow-0 cordoned\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: unable to drain node \"hollow-0\" due to error: cannot delete cannot delete Pods that declare no controller (use --force to override): default/loner, continuing command...\nThere are pending nodes to be drained:\n hollow-0\ncannot delete cannot delete Pods that declare no controller (use --force to override): default/loner\n"
    );
    assert_eq!(node("hollow-0")["spec"]["unschedulable"], true);
    assert!(api(c, "/api/v1/namespaces/default/pods/loner").is_some(), "refused pods stay");

    // A disruption budget lets the web pods go one at a time: drain's evictions beyond it
    // are refused with 429 and retried every 5 s (kubectl's message), until each
    // replacement is ready on hollow-1.
    let budget = serde_json::json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web"}, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}});
    c.ok_stdin(&["apply", "-f", "-"], &budget.to_string());
    eventually(Duration::from_secs(30), "the budget's status", || {
        let pdb = api(c, "/apis/policy/v1/namespaces/default/poddisruptionbudgets/web")?;
        (pdb["status"]["currentHealthy"] == 3 && pdb["status"]["disruptionsAllowed"] == 1).then_some(())
    });
    let evicted = pods_on("hollow-0");
    let out = c.run(&["drain", "hollow-0", "--force", "--ignore-daemonsets", "--timeout=120s"], None);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}{stderr}");
    let mut stderr_lines = stderr.lines();
    assert_eq!(stderr_lines.next(), Some("Warning: deleting Pods that declare no controller: default/loner"));
    let refusals: Vec<&str> = stderr_lines.collect();
    assert!(!refusals.is_empty(), "three pods under maxUnavailable 1 cannot all go at once: {stderr}");
    for line in refusals {
        assert!(
            line.starts_with("error when evicting pods/\"web-")
                && line.ends_with(
                    "-n \"default\" (will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."
                ),
            "{line}"
        );
    }
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "node/hollow-0 already cordoned");
    assert_eq!(lines.last(), Some(&"node/hollow-0 drained"));
    for p in evicted.iter().map(String::as_str).chain(["loner"]) {
        assert!(lines.contains(&format!("evicting pod default/{p}").as_str()), "{stdout}");
        assert!(lines.contains(&format!("pod/{p} evicted").as_str()), "{stdout}");
    }
    assert!(api(c, "/api/v1/namespaces/default/pods/loner").is_none());
    // The ReplicaSet recreates its pods on the other node.
    eventually(Duration::from_secs(30), "web pods back on hollow-1", || {
        (pods_on("hollow-1").len() == 3 && pods_on("hollow-0").is_empty()).then_some(())
    });
    assert_eq!(c.ok(&["uncordon", "hollow-0"]), "node/hollow-0 uncordoned\n");
}

fn delete(c: &CtlCluster) {
    let (code, stderr) = c.fails(&["delete", "deployment", "nope"]);
    assert_eq!((code, stderr.as_str()), (1, "Error from server (NotFound): deployments.apps \"nope\" not found\n"));
    assert_eq!(c.ok(&["delete", "deployment", "nope", "--ignore-not-found"]), "");

    assert_eq!(
        c.ok(&["delete", "configmaps", "-l", "group=demo"]),
        "configmap \"cm-a\" deleted\nconfigmap \"cm-b\" deleted\nconfigmap \"dir-a\" deleted\nconfigmap \"dir-b\" deleted\nconfigmap \"dir-c\" deleted\n"
    );
    assert_eq!(c.ok(&["delete", "configmaps", "-l", "group=demo"]), "No resources found\n");

    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: two}\n";
    c.ok_stdin(&["apply", "-n", "team-a", "-f", "-"], manifest);
    // Every namespace holds the cluster CA's ConfigMap, which the controller puts back, as
    // kube-controller-manager does (the wait sees the new one's other uid, as kubectl's).
    assert_eq!(
        c.ok(&["delete", "configmaps", "--all", "-n", "team-a"]),
        "configmap \"kube-root-ca.crt\" deleted\nconfigmap \"one\" deleted\nconfigmap \"two\" deleted\n"
    );
    let left = names(&api(c, "/api/v1/namespaces/team-a/configmaps").unwrap());
    assert!(left.iter().all(|n| n == "kube-root-ca.crt"), "{left:?}");

    // -f deletes what a manifest names.
    let file = c.dir.join("nginx.yaml");
    assert_eq!(c.ok(&["delete", "-f", file.to_str().unwrap()]), "deployment.apps \"nginx-deployment\" deleted\n");
    assert!(api(c, &format!("{DEPLOY}/nginx-deployment")).is_none(), "--wait returns once the object is gone");

    // --cascade=orphan keeps the ReplicaSets (and their pods).
    let rs = || names(&api(c, "/apis/apps/v1/namespaces/default/replicasets?labelSelector=app%3Dweb").unwrap());
    let before = rs();
    assert!(!before.is_empty());
    assert_eq!(c.ok(&["delete", "deployment", "web", "--cascade=orphan"]), "deployment.apps \"web\" deleted\n");
    assert!(api(c, &format!("{DEPLOY}/web")).is_none());
    assert_eq!(rs(), before, "orphaned ReplicaSets stay");
    let rs_obj = api(c, &format!("/apis/apps/v1/namespaces/default/replicasets/{}", before[0])).unwrap();
    assert!(rs_obj["metadata"]["ownerReferences"].as_array().is_none_or(|o| o.is_empty()), "no owner left");

    // TYPE/NAME forms, and a forced delete with kubectl's warning.
    let out = c.run(&["delete", "pod/solo", "--grace-period=0", "--force"], None);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pod \"solo\" force deleted\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.\n"
    );
    assert_eq!(
        c.ok(&["delete", "svc/web", "svc/web-auto", "service/svc-b"]),
        "service \"web\" deleted\nservice \"web-auto\" deleted\nservice \"svc-b\" deleted\n"
    );
    assert_eq!(c.ok(&["delete", "rs", "-l", "app=web", "-o", "name"]).lines().count(), before.len());
}
