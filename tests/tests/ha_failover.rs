//! HA as a user feels it (issue 17's failover test): 3 real `berth-server`s, 2 real
//! `berth-agent --runtime process` nodes and a Deployment. The server each agent talks to is
//! killed with `kill -9` (one at a time, restarted in between), then the Raft leader, then
//! the server `node-a` uses by then is paused (SIGSTOP: it accepts connections and answers
//! nothing, so only probes and idle limits can tell); all the while
//! * no node leaves Ready (the servers run with a 6 s node-monitor grace period, so a
//!   failover slower than that would show),
//! * no pod is evicted, replaced or restarted,
//! * `berthctl get pods -w`, started with server 0's own admin kubeconfig, keeps streaming.
//!
//! Agent `node-a` is told about server 0 only (`--server`) and must learn the others from
//! the servers' identity Leases; `node-b` gets a kubeconfig listing every server.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::path::PathBuf;

use berth_testkit::blocking::eventually;
use berth_testkit::{KillOnDrop, SharedLines};
use berth_tests::berthctl::{berthctl_binary, run_bounded, Agent, CtlCluster};
use serde_json::Value;

/// How long each victim stays dead: more than the grace period, several lease renewals.
const HOLD: Duration = Duration::from_secs(10);

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: sleeper
spec:
  replicas: 4
  selector:
    matchLabels: {app: sleeper}
  template:
    metadata:
      labels: {app: sleeper}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: [sleep, '3600']
";

/// berthctl with the cluster's kubeconfig, usable from the monitor thread.
#[derive(Clone)]
struct Ctl {
    kubeconfig: PathBuf,
    home: PathBuf,
}

impl Ctl {
    fn try_ok(&self, args: &[&str]) -> Option<String> {
        let mut cmd = std::process::Command::new(berthctl_binary());
        // A paused server accepts a request and never answers: time out and fail over.
        cmd.arg("--request-timeout=3s")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .env_remove("BERTH_KUBECONFIG");
        let out = run_bounded(cmd, None, Duration::from_secs(20));
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn json(&self, args: &[&str]) -> Option<Value> {
        serde_json::from_str(&self.try_ok(args)?).ok()
    }
}

/// One pod as the test compares it: uid, node, restarts, being deleted.
type PodFacts = (String, String, i64, bool);

/// The `app=sleeper` pods by name.
fn pods(ctl: &Ctl) -> Option<BTreeMap<String, PodFacts>> {
    let list = ctl.json(&["get", "pods", "-l", "app=sleeper", "-o", "json"])?;
    let mut pods = BTreeMap::new();
    for p in list["items"].as_array()? {
        let restarts = p["status"]["containerStatuses"]
            .as_array()
            .map(|cs| cs.iter().map(|s| s["restartCount"].as_i64().unwrap_or(0)).sum())
            .unwrap_or(0);
        let facts = (
            p["metadata"]["uid"].as_str()?.to_string(),
            p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
            restarts,
            !p["metadata"]["deletionTimestamp"].is_null(),
        );
        pods.insert(p["metadata"]["name"].as_str()?.to_string(), facts);
    }
    Some(pods)
}

/// Node name → status of its Ready condition.
fn node_readiness(ctl: &Ctl) -> Option<BTreeMap<String, String>> {
    let list = ctl.json(&["get", "nodes", "-o", "json"])?;
    let mut ready = BTreeMap::new();
    for n in list["items"].as_array()? {
        let status = n["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .and_then(|c| c["status"].as_str())
            .unwrap_or("missing");
        ready.insert(n["metadata"]["name"].as_str()?.to_string(), status.to_string());
    }
    Some(ready)
}

fn wait_server_ready(c: &CtlCluster, index: usize) {
    let url = &c.api_urls()[index];
    eventually(Duration::from_secs(60), &format!("server {index} ready again"), || {
        matches!(berth_tests::api_get(url, "/readyz", None), Ok((200, _))).then_some(())
    });
}

/// The index of the server `node`'s agent is using: the last one its balancer moved to
/// (server 0, which it was started with, before any failover).
fn agent_server(c: &CtlCluster, node: &str) -> usize {
    let log = std::fs::read_to_string(c.agent_log(node)).unwrap_or_default();
    let url = log
        .lines()
        .rev()
        .filter(|l| l.contains("API server failover"))
        .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("to=")))
        .map(str::to_string);
    url.and_then(|u| c.api_urls().iter().position(|a| *a == u)).unwrap_or(0)
}

fn rows_for(lines: &SharedLines, pod: &str) -> usize {
    lines.lock().unwrap().iter().filter(|l| l.starts_with(pod)).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_an_agents_server_or_the_leader_leaves_nodes_ready_and_pods_running() {
    let mut c = CtlCluster::start_with_server_args(3, Agent::None, &["--node-monitor-grace-period", "6s"]).await;
    let ctl = Ctl { kubeconfig: c.kubeconfig.clone(), home: c.dir.clone() };
    // --server names one server; its node certificate comes with a kubeconfig.
    let server0 = c.agent_api_flags("node-a", 0);
    c.start_process_agent("node-a", &server0);
    let every_server = c.kubeconfig_preferring(1);
    c.start_process_agent("node-b", &["--kubeconfig".to_string(), every_server.display().to_string()]);
    eventually(Duration::from_secs(30), "node-a learned every server", || {
        let log = std::fs::read_to_string(c.agent_log("node-a")).ok()?;
        log.contains("API servers discovered").then_some(())
    });

    c.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    let before = eventually(Duration::from_secs(60), "4 sleeper pods Running", || {
        let out = ctl.try_ok(&["get", "pods", "-l", "app=sleeper", "--no-headers"])?;
        let running = out.lines().filter(|l| l.split_whitespace().nth(2) == Some("Running")).count();
        (running == 4).then(|| pods(&ctl)).flatten()
    });
    let nodes: std::collections::BTreeSet<&str> = before.values().map(|p| p.1.as_str()).collect();
    eprintln!("pods on {nodes:?}");

    // berthctl with the kubeconfig server 0 wrote, once that server has listed every member.
    let server_kubeconfig = c.servers.members[0].data_dir.join(berth_proto::kubeconfig::ADMIN_KUBECONFIG);
    eventually(Duration::from_secs(30), "server 0's kubeconfig lists every server", || {
        let text = std::fs::read_to_string(&server_kubeconfig).ok()?;
        c.api_urls().iter().all(|u| text.contains(u.as_str())).then_some(())
    });
    let mut watch_cmd = c.command(&["get", "pods", "-w", "--no-headers"]);
    watch_cmd.env("KUBECONFIG", &server_kubeconfig).stdout(std::process::Stdio::piped());
    let mut watch = KillOnDrop(watch_cmd.spawn().expect("berthctl get pods -w"));
    let lines = watch.stdout_lines();
    eventually(Duration::from_secs(20), "get -w printed the pods", || (lines.lock().unwrap().len() >= 4).then_some(()));

    // Watch every node and pod from the side while servers die.
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (ctl, violations, stop, before) = (ctl.clone(), violations.clone(), stop.clone(), before.clone());
        std::thread::spawn(move || {
            let mut samples = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Some(ready) = node_readiness(&ctl) {
                    samples += 1;
                    for (node, status) in ready.iter().filter(|(_, s)| *s != "True") {
                        violations.lock().unwrap().push(format!("node {node} Ready={status}"));
                    }
                }
                if let Some(now) = pods(&ctl).filter(|now| *now != before) {
                    violations.lock().unwrap().push(format!("pods changed: {before:?} -> {now:?}"));
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            samples
        })
    };

    // node-a's server, node-b's server, whichever server leads by then (all kill -9), then
    // the server node-a is using by then, paused.
    for step in 0..4 {
        let victim = match step {
            0 | 1 => step,
            2 => c.leader_index().expect("a leader-task holder"),
            _ => agent_server(&c, "node-a"),
        };
        let pause = step == 3;
        eprintln!("step {step}: {} server {victim}", if pause { "SIGSTOP" } else { "kill -9" });
        c.servers.members[victim].signal(if pause { libc::SIGSTOP } else { libc::SIGKILL });
        let hit = Instant::now();
        // `get -w` keeps streaming: a change made now shows up in its output. (Through a
        // paused server it can take the watch's idle limit, 15 s with bookmarks.)
        let pod = before.keys().nth(step).unwrap().clone();
        let seen = rows_for(&lines, &pod);
        eventually(Duration::from_secs(20), "annotating a pod", || {
            ctl.try_ok(&["annotate", "pod", &pod, &format!("step={step}"), "--overwrite"])
        });
        eventually(Duration::from_secs(30), "get -w printed the change", || {
            (rows_for(&lines, &pod) > seen).then_some(())
        });
        eprintln!("step {step}: get -w streamed the change {:?} after the fault", hit.elapsed());
        std::thread::sleep(HOLD.saturating_sub(hit.elapsed()));
        if pause {
            c.servers.members[victim].signal(libc::SIGCONT);
        } else {
            c.servers.members[victim].kill();
            c.servers.members[victim].start().expect("restarting the server");
        }
        wait_server_ready(&c, victim);
    }
    stop.store(true, Ordering::Relaxed);
    let samples = monitor.join().unwrap();
    assert!(samples > 15, "the monitor saw the nodes only {samples} times");
    let violations = violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "during failovers: {violations:#?}");
    assert_eq!(pods(&ctl).as_ref(), Some(&before), "the same pods, never restarted");
    assert!(watch.0.try_wait().unwrap().is_none(), "berthctl get -w is still running");
}
