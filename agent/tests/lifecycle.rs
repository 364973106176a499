//! Pod lifecycle on a real agent (process runtime) against an in-process control plane:
//! probes (httpGet readiness on `python3 -m http.server`, exec liveness restarts, exec
//! readiness flipping Ready), init containers and volumes (configMap + emptyDir mounted in
//! the container's own mount namespace, updated when the ConfigMap changes), graceful
//! deletion observed by the container, `/stats/summary`; then agent restarts (kill -9 of
//! the `berth-agent` binary: containers re-adopted, same pids, orphans killed) and a
//! control-plane outage (pods keep running and restarting; statuses catch up).
//!
//! Every process a test starts is killed when it ends, also on failure ([`Reaper`]).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_agent::{Agent, AgentConfig, Heartbeat, NodeTemplate, RuntimeKind};
use berth_control::testing::Server;
use berth_testkit::{eventually, free_port, KillOnDrop};
use common::pod;
use k8s_openapi::api::core::v1::{ConfigMap, ContainerStatus, Pod};
use kube::api::{DeleteParams, LogParams, Patch, PatchParams, PostParams};
use kube::Api;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);
const BIN: &str = env!("CARGO_BIN_EXE_berth-agent");

fn pid_alive(pid: i32) -> bool {
    // A zombie (exited, not reaped by whoever inherited it) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()))
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// Kills recorded process groups and child processes when dropped (test cleanup).
#[derive(Default)]
struct Reaper {
    groups: Vec<i32>,
    agents: Vec<KillOnDrop>,
}

impl Reaper {
    fn group(&mut self, pid: i32) {
        self.groups.push(pid);
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // The agents first: a live agent would restart the containers killed below.
        self.agents.clear();
        for g in &self.groups {
            // SAFETY: kill(2) on process groups this test started.
            unsafe {
                libc::kill(-g, libc::SIGKILL);
            }
        }
    }
}

fn status(p: &Pod) -> Option<&ContainerStatus> {
    p.status.as_ref()?.container_statuses.as_ref()?.first()
}

fn pid_of(p: &Pod) -> Option<i32> {
    status(p)?.container_id.as_deref()?.strip_prefix("process://")?.parse().ok()
}

fn condition(p: &Pod, t: &str) -> Option<String> {
    p.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == t).map(|c| c.status.clone())
}

fn config(node: &str, data_dir: &Path) -> AgentConfig {
    AgentConfig {
        node_name: node.into(),
        template: NodeTemplate { heartbeat: Heartbeat::with_renew(Duration::from_secs(1)), ..Default::default() },
        runtime: RuntimeKind::Process,
        data_dir: data_dir.to_path_buf(),
        listen_port: 0,
        fake_start_delay: None,
        stop_containers_on_exit: true,
        client_ca_pem: berth_control::testing::agent_client_ca(),
    }
}

/// The Python interpreter behind `python3` (a pyenv shim is not on the containers' PATH).
fn python() -> String {
    let out = std::process::Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output();
    out.ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).filter(|p| !p.is_empty()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_init_containers_volumes_stats_and_graceful_stop() {
    let mut cp = Server::start().await;
    let client = cp.client();
    let (data, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let w = |p: &str| work.path().join(p).display().to_string();
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let agent = Agent::start(client.clone(), config("worker-1", data.path()), cancel.clone()).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
        "data": {"color": "teal"}});
    cms.create(&PostParams::default(), &serde_json::from_value(cm).unwrap()).await.unwrap();

    // 1. httpGet readiness (and a tcpSocket startup probe) on python3 -m http.server.
    let port = free_port();
    let web = pod(
        "web",
        serde_json::json!({"nodeName": "worker-1", "containers": [{
            "name": "main", "image": "python", "workingDir": work.path(),
            "command": [python(), "-m", "http.server", port.to_string(), "--bind", "127.0.0.1"],
            "ports": [{"name": "http", "containerPort": port}],
            "startupProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1, "failureThreshold": 30},
            "readinessProbe": {"httpGet": {"path": "/", "port": port}, "periodSeconds": 1}}]}),
    );
    // 2. exec liveness: fails once the file is gone → the container is killed and restarted.
    std::fs::write(w("alive"), "").unwrap();
    let live = pod(
        "live",
        serde_json::json!({"nodeName": "worker-1", "terminationGracePeriodSeconds": 2, "containers": [{
            "name": "main", "image": "none", "command": ["sh", "-c", "echo up; exec sleep 1000"],
            "livenessProbe": {"exec": {"command": ["test", "-f", w("alive")]}, "periodSeconds": 1,
                "failureThreshold": 2}}]}),
    );
    // 3. exec readiness on a file the test creates and removes.
    let flip = pod(
        "flip",
        serde_json::json!({"nodeName": "worker-1", "containers": [{
            "name": "main", "image": "none", "command": ["sleep", "1000"],
            "readinessProbe": {"exec": {"command": ["test", "-f", w("ready")]}, "periodSeconds": 1}}]}),
    );
    // 4. An init container writes into an emptyDir; the app container reads it, a configMap
    //    volume (its own mount namespace: nothing appears on the host path) and env.
    let (cfg, scratch) = (w("mnt/config"), w("mnt/scratch"));
    let vols = pod(
        "vols",
        serde_json::json!({"nodeName": "worker-1",
        "initContainers": [{"name": "prep", "image": "none",
            "command": ["sh", "-c", format!("echo prepared > {scratch}/init.txt")],
            "volumeMounts": [{"name": "scratch", "mountPath": scratch}]}],
        "containers": [{"name": "main", "image": "none",
            "command": ["sh", "-c", format!(
                "cat {scratch}/init.txt; echo env=$COLOR; (touch {cfg}/x 2>/dev/null && echo cfg=rw) || echo cfg=ro; \
                 while true; do echo file=$(cat {cfg}/colour); sleep 1; done")],
            "env": [{"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "color"}}}],
            "volumeMounts": [{"name": "cfg", "mountPath": cfg}, {"name": "scratch", "mountPath": scratch}]}],
        "volumes": [
            {"name": "cfg", "configMap": {"name": "settings", "items": [{"key": "color", "path": "colour"}]}},
            {"name": "scratch", "emptyDir": {}}]}),
    );
    // 5. A container that traps SIGTERM, with a preStop hook that must run before it.
    let term = pod(
        "term",
        serde_json::json!({"nodeName": "worker-1", "containers": [{"name": "main", "image": "none",
            "command": ["sh", "-c", format!(
                "trap 'echo got TERM; echo term >> {}; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
                w("term-mark"))],
            "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", format!("echo prestop >> {}", w("term-mark"))]}}}}]}),
    );
    for p in [&web, &live, &flip, &vols, &term] {
        pods.create(&PostParams::default(), p).await.unwrap();
    }

    // 1: Running and Ready through the probes; started.
    let p = eventually(WAIT, "web Ready", || async {
        let p = pods.get("web").await.ok()?;
        (condition(&p, "Ready").as_deref() == Some("True")).then_some(p)
    })
    .await;
    let cs = status(&p).unwrap();
    assert_eq!(
        (cs.started, cs.ready, p.status.as_ref().unwrap().phase.as_deref()),
        (Some(true), true, Some("Running"))
    );
    for pid in [pid_of(&p)].into_iter().flatten() {
        assert!(pid_alive(pid));
    }

    // 3: Ready follows the readiness file.
    let flip_ready = |want: &'static str| {
        let pods = pods.clone();
        async move {
            eventually(WAIT, &format!("flip Ready={want}"), || async {
                let p = pods.get("flip").await.ok()?;
                (condition(&p, "Ready").as_deref() == Some(want) && pid_of(&p).is_some()).then_some(p)
            })
            .await
        }
    };
    let p = flip_ready("False").await;
    assert!(status(&p).unwrap().state.as_ref().unwrap().running.is_some());
    std::fs::write(w("ready"), "").unwrap();
    flip_ready("True").await;
    std::fs::remove_file(w("ready")).unwrap();
    let p = flip_ready("False").await;
    assert_eq!(status(&p).unwrap().restart_count, 0, "readiness never restarts");

    // 2: a failing liveness probe restarts the container (SIGTERM: exit 143, reason Error).
    let before = eventually(WAIT, "live Running", || async {
        let p = pods.get("live").await.ok()?;
        let running = status(&p)?.state.as_ref()?.running.is_some();
        pid_of(&p).filter(|_| running)
    })
    .await;
    std::fs::remove_file(w("alive")).unwrap();
    let p = eventually(WAIT, "live restarted by its liveness probe", || async {
        let p = pods.get("live").await.ok()?;
        (status(&p)?.restart_count >= 1).then_some(p)
    })
    .await;
    std::fs::write(w("alive"), "").unwrap();
    let last = status(&p).unwrap().last_state.as_ref().unwrap().terminated.clone().unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (143, Some("Error")), "{last:?}");
    assert!(!pid_alive(before), "the unhealthy run was killed");

    // 4: init container, volumes and env, through the log API.
    let logs = eventually(WAIT, "vols output", || async {
        let l = pods.logs("vols", &LogParams { container: Some("main".into()), ..Default::default() }).await.ok()?;
        l.contains("file=teal").then_some(l)
    })
    .await;
    assert!(logs.starts_with("prepared\nenv=teal\ncfg=ro\n"), "{logs}");
    let p = pods.get("vols").await.unwrap();
    let init = &p.status.as_ref().unwrap().init_container_statuses.as_ref().unwrap()[0];
    assert_eq!(init.state.as_ref().unwrap().terminated.as_ref().unwrap().reason.as_deref(), Some("Completed"));
    assert_eq!(condition(&p, "Initialized").as_deref(), Some("True"));
    assert!(!Path::new(&cfg).join("colour").exists(), "the mount is private to the container");
    let patch = serde_json::json!({"data": {"color": "ruby"}});
    cms.patch("settings", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    eventually(WAIT, "the ConfigMap update inside the container", || async {
        let l = pods.logs("vols", &LogParams { container: Some("main".into()), ..Default::default() }).await.ok()?;
        l.contains("file=ruby").then_some(())
    })
    .await;

    // /stats/summary: the kubelet Summary API shape.
    let (_, body) =
        common::agent_get(agent.kubelet_addr, "/stats/summary", Some(berth_control::testing::admin())).await;
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(summary["node"]["nodeName"], "worker-1");
    let web_stats = summary["pods"].as_array().unwrap().iter().find(|p| p["podRef"]["name"] == "web").unwrap().clone();
    let c = &web_stats["containers"][0];
    assert_eq!(c["name"], "main");
    assert!(c["memory"]["workingSetBytes"].as_u64().unwrap() > 1_000_000, "{c}");
    assert!(c["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0, "{c}");
    assert!(c["cpu"]["usageNanoCores"].is_u64(), "{c}");

    // 5: delete → the preStop hook runs, then the container sees SIGTERM → gone well
    // within the 30 s grace.
    eventually(WAIT, "term ready", || async {
        let l = pods.logs("term", &LogParams::default()).await.ok()?;
        l.contains("ready").then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    pods.delete("term", &DeleteParams::default()).await.unwrap();
    eventually(WAIT, "term gone", || async { pods.get_opt("term").await.ok()?.is_none().then_some(()) }).await;
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(std::fs::read_to_string(w("term-mark")).unwrap(), "prestop\nterm\n", "preStop, then SIGTERM");

    cancel.cancel();
    tokio::time::timeout(WAIT, agent.stopped()).await.expect("agent stops");
    cp.stop().await;
}

fn spawn_agent(api_url: &str, node: &str, data: &Path, extra: &[&str]) -> std::process::Child {
    std::fs::create_dir_all(data).unwrap();
    let kubeconfig = data.join("kubelet.kubeconfig");
    berth_control::testing::write_kubeconfig(&kubeconfig, &[api_url], &berth_control::testing::node_credentials(node));
    std::process::Command::new(BIN)
        .args(["--server", api_url, "--node-name", node, "--data-dir"])
        .arg(data)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--runtime", "process", "--listen-port", "0", "--node-ip", "127.0.0.1", "--lease-seconds", "1"])
        .args(["--log-level", "info"])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Live processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(marker) && pid_alive(pid) {
            out.push(pid);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_kill_9_and_restart_adopts_containers() {
    let mut cp = Server::start().await;
    let client = cp.client();
    let data = tempfile::tempdir().unwrap();
    let mut reaper = Reaper::default();
    reaper.agents.push(KillOnDrop(spawn_agent(&cp.api_url, "worker-a", data.path(), &[])));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Unique sleep durations mark the processes of this test.
    let (keep_mark, doomed_mark) =
        (format!("{}.25", 100_000 + std::process::id()), format!("{}.75", 100_000 + std::process::id()));
    for (name, mark) in [("keep", &keep_mark), ("doomed", &doomed_mark)] {
        let p = pod(
            name,
            serde_json::json!({"nodeName": "worker-a", "containers": [{
            "name": "main", "image": "none", "command": ["sleep", mark]}]}),
        );
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    let running = |name: &'static str| {
        let pods = pods.clone();
        async move {
            eventually(WAIT, &format!("{name} Running"), || async {
                let p = pods.get(name).await.ok()?;
                pid_of(&p).filter(|_| condition(&p, "Ready").as_deref() == Some("True")).map(|pid| (pid, p))
            })
            .await
        }
    };
    let (keep_pid, _) = running("keep").await;
    let (doomed_pid, _) = running("doomed").await;
    reaper.group(keep_pid);
    reaper.group(doomed_pid);

    // kill -9 the agent: its containers keep running.
    let mut agent = reaper.agents.pop().unwrap();
    agent.kill();
    assert!(pid_alive(keep_pid) && pid_alive(doomed_pid));
    // A pod force-deleted while the agent is down leaves an orphan for the next agent.
    pods.delete("doomed", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();

    // The next agent (same data dir) re-adopts `keep` and kills the orphan.
    reaper.agents.push(KillOnDrop(spawn_agent(&cp.api_url, "worker-a", data.path(), &["--stop-containers-on-exit"])));
    eventually(WAIT, "the orphan killed", || async { (!pid_alive(doomed_pid)).then_some(()) }).await;
    assert!(pid_alive(keep_pid), "the adopted container still runs");
    assert_eq!(processes_with(&keep_mark), vec![keep_pid], "no second copy was started");
    let p = pods.get("keep").await.unwrap();
    assert_eq!((pid_of(&p), status(&p).unwrap().restart_count), (Some(keep_pid), 0));

    // The adopted process is supervised: when it dies, it is restarted.
    // SAFETY: kill(2) on the container this test started.
    unsafe {
        libc::kill(keep_pid, libc::SIGKILL);
    }
    let p = eventually(WAIT, "keep restarted", || async {
        let p = pods.get("keep").await.ok()?;
        (status(&p)?.restart_count == 1 && pid_of(&p)? != keep_pid && condition(&p, "Ready")? == "True").then_some(p)
    })
    .await;
    let new_pid = pid_of(&p).unwrap();
    reaper.group(new_pid);
    assert_eq!(processes_with(&keep_mark), vec![new_pid]);

    // SIGTERM to an agent started with --stop-containers-on-exit stops its containers.
    let mut agent = reaper.agents.pop().unwrap();
    // SAFETY: kill(2) on the agent this test started.
    unsafe {
        libc::kill(agent.0.id() as i32, libc::SIGTERM);
    }
    agent.0.wait().unwrap();
    eventually(WAIT, "containers stopped with the agent", || async { (!pid_alive(new_pid)).then_some(()) }).await;
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_keep_running_through_a_control_plane_outage() {
    let cp_dir = tempfile::tempdir().unwrap();
    let (peer_port, api_port) = (free_port(), free_port());
    let mut cp = Server::start_at(cp_dir.path(), peer_port, api_port).await;
    let client = cp.client();
    let (data, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let counter: PathBuf = work.path().join("runs");
    // The first agent leaves its containers running when it stops (it is restarted below).
    let first_cancel = CancellationToken::new();
    let _stop_first = first_cancel.clone().drop_guard();
    let first = Agent::start(
        client.clone(),
        AgentConfig { stop_containers_on_exit: false, ..config("worker-o", data.path()) },
        first_cancel.clone(),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let steady = pod(
        "steady",
        serde_json::json!({"nodeName": "worker-o", "containers": [{
        "name": "main", "image": "none", "command": ["sleep", "1000"]}]}),
    );
    let flappy = pod(
        "flappy",
        serde_json::json!({"nodeName": "worker-o", "containers": [{
        "name": "main", "image": "none",
        "command": ["sh", "-c", format!("echo run >> {}; sleep 1; exit 1", counter.display())]}]}),
    );
    pods.create(&PostParams::default(), &steady).await.unwrap();
    pods.create(&PostParams::default(), &flappy).await.unwrap();
    let steady_pid = eventually(WAIT, "steady Running", || async { pid_of(&pods.get("steady").await.ok()?) }).await;
    eventually(WAIT, "flappy restarted once", || async {
        (status(&pods.get("flappy").await.ok()?)?.restart_count >= 1).then_some(())
    })
    .await;
    let runs = || std::fs::read_to_string(&counter).unwrap_or_default().lines().count();
    let runs_before = runs();

    // The control plane goes away: pods keep running, restart policies still apply.
    cp.stop().await;
    assert!(pods.get("steady").await.is_err(), "the API is down");
    eventually(WAIT, "flappy restarted while the API is down", || async { (runs() > runs_before).then_some(()) }).await;
    assert!(pid_alive(steady_pid));

    // The agent restarts while the API is still down: it re-adopts `steady` and, from its
    // pod checkpoints, keeps applying `flappy`'s restart policy.
    let mut reaper = Reaper::default();
    reaper.group(steady_pid);
    first_cancel.cancel();
    tokio::time::timeout(WAIT, first.stopped()).await.expect("first agent stops");
    assert!(pid_alive(steady_pid), "containers outlive the agent");
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let agent = Agent::start(client.clone(), config("worker-o", data.path()), cancel.clone()).await.unwrap();
    let runs_at_restart = runs();
    eventually(WAIT, "flappy restarted by the new agent while the API is down", || async {
        (runs() > runs_at_restart).then_some(())
    })
    .await;
    assert!(pid_alive(steady_pid));

    // It comes back on the same address with the same data: statuses catch up.
    drop(cp);
    let mut cp = Server::start_at(cp_dir.path(), peer_port, api_port).await;
    let want = runs() as i32 - 1;
    eventually(WAIT, "flappy's restartCount caught up", || async {
        let n = status(&pods.get("flappy").await.ok()?)?.restart_count;
        (n >= want).then_some(())
    })
    .await;
    let p = pods.get("steady").await.unwrap();
    assert_eq!((pid_of(&p), status(&p).unwrap().restart_count), (Some(steady_pid), 0));
    assert!(pid_alive(steady_pid));

    cancel.cancel();
    tokio::time::timeout(WAIT, agent.stopped()).await.expect("agent stops");
    cp.stop().await;
}

/// The cgroup file of `pid` for `v1_controller` (v1) or the unified hierarchy (v2).
fn cgroup_file(pid: i32, v1_controller: &str, v1_file: &str, v2_file: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        let path = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        return root.join(path.trim_start_matches('/')).join(v2_file);
    }
    let path = text
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            ctrls.split(',').any(|c| c == v1_controller).then_some(path)
        })
        .unwrap();
    root.join(v1_controller).join(path.trim_start_matches('/')).join(v1_file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_enforced_through_cgroups() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: cgroups need root");
        return;
    }
    let mut cp = Server::start().await;
    let client = cp.client();
    let data = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let agent = Agent::start(client.clone(), config("worker-c", data.path()), cancel.clone()).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let capped = pod(
        "capped",
        serde_json::json!({"nodeName": "worker-c", "containers": [{
        "name": "main", "image": "none", "command": ["sleep", "1000"],
        "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}}}]}),
    );
    let hog = pod(
        "hog",
        serde_json::json!({"nodeName": "worker-c", "restartPolicy": "Never", "containers": [{
        "name": "main", "image": "none",
        "command": [python(), "-c", "import time; b = b'x' * (512 << 20); time.sleep(100)"],
        "resources": {"limits": {"memory": "64Mi"}}}]}),
    );
    let mark = format!("{}.5", 200_000 + std::process::id());
    let escape = pod(
        "escape",
        serde_json::json!({"nodeName": "worker-c", "containers": [{
        "name": "main", "image": "none",
        "command": ["sh", "-c", format!("setsid sleep {mark} & exec sleep 1000")]}]}),
    );
    pods.create(&PostParams::default(), &capped).await.unwrap();
    pods.create(&PostParams::default(), &hog).await.unwrap();
    pods.create(&PostParams::default(), &escape).await.unwrap();

    let pid = eventually(WAIT, "capped Running", || async { pid_of(&pods.get("capped").await.ok()?) }).await;
    let cpu = std::fs::read_to_string(cgroup_file(pid, "cpu", "cpu.cfs_quota_us", "cpu.max")).unwrap();
    assert!(cpu.trim() == "25000" || cpu.trim() == "25000 100000", "{cpu}");
    let mem = std::fs::read_to_string(cgroup_file(pid, "memory", "memory.limit_in_bytes", "memory.max")).unwrap();
    assert_eq!(mem.trim(), (64u64 << 20).to_string());

    let p = eventually(WAIT, "hog OOMKilled", || async {
        let p = pods.get("hog").await.ok()?;
        let t = status(&p)?.state.as_ref()?.terminated.clone()?;
        Some((t, p))
    })
    .await;
    assert_eq!((p.0.reason.as_deref(), p.0.exit_code), (Some("OOMKilled"), 137), "{:?}", p.0);
    assert_eq!(p.1.status.as_ref().unwrap().phase.as_deref(), Some("Failed"));

    // A process that left the container's process group still goes with the container.
    let escaped = eventually(WAIT, "the escaped process", || async { processes_with(&mark).first().copied() }).await;
    let mut reaper = Reaper::default();
    reaper.group(escaped);
    let stat = std::fs::read_to_string(format!("/proc/{escaped}/stat")).unwrap();
    let pgrp: i32 = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(2).unwrap().parse().unwrap();
    let container = pid_of(&pods.get("escape").await.unwrap()).unwrap();
    assert_ne!(pgrp, container, "setsid left the container's process group");
    pods.delete("escape", &DeleteParams::default()).await.unwrap();
    eventually(WAIT, "escape gone", || async { pods.get_opt("escape").await.ok()?.is_none().then_some(()) }).await;
    eventually(WAIT, "the escaped process killed with its cgroup", || async { (!pid_alive(escaped)).then_some(()) })
        .await;

    cancel.cancel();
    tokio::time::timeout(WAIT, agent.stopped()).await.expect("agent stops");
    assert!(!pid_alive(pid));
    cp.stop().await;
}
