//! A real agent with the process runtime against an in-process control plane: a pod's
//! command runs with its environment, its output comes back through the API's log proxy,
//! crash loops back off, a container without command is a CreateContainerError, and
//! graceful deletion stops the process. Every process is gone when the test ends (the agent
//! runs with `stop_containers_on_exit`, so the runtime kills its containers on shutdown and
//! on drop).

mod common;

use std::time::Duration;

use berth_agent::{Agent, AgentConfig, Heartbeat, NodeTemplate, RuntimeKind};
use berth_control::testing::Server;
use berth_testkit::eventually;
use common::pod;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{DeleteParams, LogParams, PostParams};
use kube::Api;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn waiting_reason(p: &Pod) -> Option<String> {
    p.status.as_ref()?.container_statuses.as_ref()?.first()?.state.as_ref()?.waiting.as_ref()?.reason.clone()
}

/// A process-runtime agent for node `name` on `dir`, stopping its containers on exit.
fn process_agent(name: &str, dir: &std::path::Path) -> AgentConfig {
    AgentConfig {
        node_name: name.into(),
        template: NodeTemplate { heartbeat: Heartbeat::with_renew(Duration::from_secs(1)), ..Default::default() },
        runtime: RuntimeKind::Process,
        data_dir: dir.to_path_buf(),
        listen_port: 0,
        fake_start_delay: None,
        stop_containers_on_exit: true,
        client_ca_pem: berth_control::testing::agent_client_ca(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_runtime_runs_logs_restarts_and_stops() {
    let mut cp = Server::start().await;
    let client = cp.client();
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let agent = Agent::start(client.clone(), process_agent("worker-1", dir.path()), cancel.clone()).await.unwrap();

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
        "data": {"color": "teal"}});
    cms.create(&PostParams::default(), &serde_json::from_value(cm).unwrap()).await.unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let hi = pod(
        "hi",
        serde_json::json!({"nodeName": "worker-1", "containers": [{
        "name": "main", "image": "none",
        "command": ["sh", "-c"], "args": ["echo hi; echo color=$COLOR pod=$POD; sleep 30"],
        "env": [
            {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "color"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
        ]}]}),
    );
    pods.create(&PostParams::default(), &hi).await.unwrap();
    let running = eventually(WAIT, "hi Running and Ready", || async {
        let p = pods.get("hi").await.ok()?;
        let ready = p.status.as_ref()?.conditions.as_ref()?.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(p)
    })
    .await;
    let cs = &running.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0];
    let pid: i32 = cs.container_id.as_deref().unwrap().strip_prefix("process://").unwrap().parse().unwrap();
    assert!(pid_alive(pid));

    // kubectl logs: GET /api/v1/namespaces/default/pods/hi/log through the API's proxy.
    let logs = eventually(WAIT, "hi's output", || async {
        let l = pods.logs("hi", &LogParams::default()).await.ok()?;
        l.contains("pod=hi").then_some(l)
    })
    .await;
    assert_eq!(logs, "hi\ncolor=teal pod=hi\n");
    let tail =
        pods.logs("hi", &LogParams { tail_lines: Some(1), timestamps: true, ..Default::default() }).await.unwrap();
    assert!(tail.ends_with(" color=teal pod=hi\n") && !tail.contains("hi\nc"), "{tail}");

    // A crashing container restarts, then backs off.
    let crash = pod(
        "crash",
        serde_json::json!({"nodeName": "worker-1", "containers": [{
            "name": "main", "image": "none", "command": ["sh", "-c", "echo boom; exit 1"]}]}),
    );
    pods.create(&PostParams::default(), &crash).await.unwrap();
    let p = eventually(WAIT, "crash in CrashLoopBackOff", || async {
        let p = pods.get("crash").await.ok()?;
        (waiting_reason(&p).as_deref() == Some("CrashLoopBackOff")).then_some(p)
    })
    .await;
    let cs = &p.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0];
    assert!(cs.restart_count >= 1);
    assert_eq!(cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 1);
    assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
    let previous = pods.logs("crash", &LogParams { previous: true, ..Default::default() }).await.unwrap();
    assert_eq!(previous, "boom\n");

    // No command: CreateContainerError.
    let bare =
        pod("bare", serde_json::json!({"nodeName": "worker-1", "containers": [{"name": "main", "image": "nginx"}]}));
    pods.create(&PostParams::default(), &bare).await.unwrap();
    eventually(WAIT, "bare in CreateContainerError", || async {
        let p = pods.get("bare").await.ok()?;
        (waiting_reason(&p).as_deref() == Some("CreateContainerError")).then_some(())
    })
    .await;

    // A finished pod with restartPolicy Never: Succeeded.
    let once = pod(
        "once",
        serde_json::json!({"nodeName": "worker-1", "restartPolicy": "Never", "containers": [{
            "name": "main", "image": "none", "command": ["true"]}]}),
    );
    pods.create(&PostParams::default(), &once).await.unwrap();
    eventually(WAIT, "once Succeeded", || async {
        let p = pods.get("once").await.ok()?;
        (p.status?.phase.as_deref() == Some("Succeeded")).then_some(())
    })
    .await;

    // Graceful deletion: SIGTERM stops `sh`, the agent confirms, the pod disappears.
    pods.delete("hi", &DeleteParams::default()).await.unwrap();
    eventually(WAIT, "hi gone", || async { pods.get_opt("hi").await.ok()?.is_none().then_some(()) }).await;
    eventually(WAIT, "hi's process gone", || async { (!pid_alive(pid)).then_some(()) }).await;

    cancel.cancel();
    tokio::time::timeout(WAIT, agent.stopped()).await.expect("agent stops");
    cp.stop().await;
}

/// Runs the real kubectl against `api` (bounded), feeding `stdin`; (stdout, exit code).
fn kubectl(api: &str, args: &[&str], stdin: &[u8]) -> (String, Option<i32>) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let kubeconfig = berth_control::testing::kubeconfig_file(api);
    let mut child = Command::new("timeout")
        .args(["60", "kubectl", "-s", api])
        .args(args)
        .env("KUBECONFIG", kubeconfig.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    (String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr), out.status.code())
}

/// `kubectl exec` into a host-process container: the agent runs the command in the
/// container's environment and working directory, with stdin, the exit code, and a
/// terminal for `-it`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_runs_in_a_host_process_container() {
    let cp = Server::start().await;
    let client = cp.client();
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let _agent = Agent::start(client.clone(), process_agent("worker-x", dir.path()), cancel.clone()).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let shell = pod(
        "shell",
        serde_json::json!({"nodeName": "worker-x", "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": "none", "command": ["sleep", "600"],
            "env": [{"name": "GREETING", "value": "hello from the container"}]}]}),
    );
    pods.create(&PostParams::default(), &shell).await.unwrap();
    eventually(WAIT, "shell Running", || async {
        let p = pods.get("shell").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    let api = cp.api_url.clone();
    let admin_kubeconfig = std::sync::Arc::new(berth_control::testing::kubeconfig_file(&api));
    let run = |args: &'static [&'static str], stdin: &'static [u8]| {
        let api = api.clone();
        tokio::task::spawn_blocking(move || kubectl(&api, args, stdin))
    };
    let (out, code) =
        run(&["exec", "shell", "--", "sh", "-c", "echo $GREETING; echo oops >&2; exit 3"], b"").await.unwrap();
    assert!(out.contains("hello from the container") && out.contains("oops"), "{out}");
    assert_eq!(code, Some(3), "kubectl exits with the command's code: {out}");
    let (out, code) = run(&["exec", "-i", "shell", "--", "wc", "-c"], &[b'y'; 100_000]).await.unwrap();
    assert_eq!((out.trim(), code), ("100000", Some(0)));
    let (out, code) = run(&["exec", "shell", "--", "no-such-command"], b"").await.unwrap();
    assert!(code != Some(0) && out.contains("no-such-command"), "{code:?} {out}");
    let (out, code) = run(&["exec", "shell", "-c", "nope", "--", "true"], b"").await.unwrap();
    assert!(code != Some(0) && out.contains("nope"), "{code:?} {out}");
    // -it: `script` gives kubectl a terminal; the command gets one of its own.
    let tty = tokio::task::spawn_blocking({
        let api = api.clone();
        let admin_kubeconfig = admin_kubeconfig.clone();
        move || {
            std::process::Command::new("timeout")
                .args(["60", "script", "-qec"])
                .arg(format!("kubectl -s {api} exec -it shell -- sh -c 'tty; stty size; echo tty-done'"))
                .arg("/dev/null")
                .env("KUBECONFIG", admin_kubeconfig.path())
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(shown.contains("/dev/pts/") && shown.contains("tty-done"), "exec -it: {shown}");
    pods.delete("shell", &DeleteParams::default()).await.unwrap();
}

/// The agent's port (issue 20): TLS only; a caller without a certificate of the cluster CA
/// gets 401, one the API does not authorize (a SubjectAccessReview on nodes/stats) 403 with
/// kubelet's message, the API server's own kind of certificate (system:masters) the answer;
/// `/healthz` is public.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_port_admits_only_callers_the_api_authorizes() {
    let mut cp = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let agent = Agent::start(cp.client(), process_agent("guarded", dir.path()), cancel.clone()).await.unwrap();
    let addr = agent.kubelet_addr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET /stats/summary HTTP/1.0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"), "plain HTTP is not served");

    assert_eq!(common::agent_get(addr, "/healthz", None).await.0, 200);
    assert_eq!(common::agent_get(addr, "/stats/summary", None).await, (401, "Unauthorized".to_string()));
    let stranger = berth_proto::kubeconfig::Credentials {
        ca_pem: String::new(),
        client: berth_proto::pki::Ca::generate("stranger").unwrap().issue_client("admin", &["system:masters"]).unwrap(),
    };
    assert_eq!(common::agent_get(addr, "/stats/summary", Some(&stranger)).await.0, 401, "another CA's certificate");
    let alice = berth_control::testing::credentials("alice", &[]);
    assert_eq!(
        common::agent_get(addr, "/stats/summary", Some(&alice)).await,
        (403, "Forbidden (user=alice, verb=get, resource=nodes, subresource=stats)".to_string())
    );
    let kubelet_client = berth_control::testing::credentials("kube-apiserver-kubelet-client", &["system:masters"]);
    let (status, body) = common::agent_get(addr, "/stats/summary", Some(&kubelet_client)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"nodeName\":\"guarded\""), "{body}");
    cancel.cancel();
    agent.stopped().await;
    cp.stop().await;
}
