//! Black-box tests of Berth's own `berthctl` commands against real `berth-server` processes:
//! `cluster status`, `member list|add|promote|remove`, `snapshot save` with a restore into a
//! fresh server (`berth-server --restore-snapshot`), the admin kubeconfig a fresh server
//! writes (used by the real kubectl), and `up` / `down` of a local cluster.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_jepsen::procs::{free_port, ClusterSpec, Db, Member, ProcessCluster};
use berth_testkit::blocking::eventually;
use berth_tests::berthctl::{berthctl_binary, run_bounded};
use serde_json::Value;

/// Three real servers and an admin kubeconfig listing them all (the `berth.dev/servers`
/// extension). Only berthctl's own commands and the real kubectl drive it, so these tests
/// depend on no other berthctl verb.
struct Cluster {
    servers: ProcessCluster,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.servers.members {
            m.kill();
        }
        // Logs and data stay for a failed test to be looked at.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        let dir = tempfile::Builder::new().prefix("berthctl-ops").tempdir().expect("tempdir").keep();
        let mut servers = ProcessCluster::start(&ClusterSpec::new(Db::Berth, n), &dir.join("servers"))
            .expect("starting berth-server processes");
        servers.wait_ready(Duration::from_secs(30)).await.expect("store ready");
        let ext = berth_proto::kubeconfig::ServersExtension {
            api_servers: servers.members.iter().map(|m| m.api_url.clone()).collect(),
            etcd_endpoints: servers.endpoints(),
        };
        let kubeconfig = dir.join("kubeconfig");
        let admin = berth_jepsen::pki::admin_credentials();
        let text = berth_proto::kubeconfig::admin_kubeconfig_with_etcd_yaml("berth", &ext, Some(&admin));
        std::fs::write(&kubeconfig, text).unwrap();
        let c = Cluster { servers, dir, kubeconfig };
        eventually(Duration::from_secs(30), "kube-system", || {
            let mut cmd = Command::new("kubectl");
            cmd.arg("--kubeconfig").arg(&c.kubeconfig).args(["get", "namespace", "kube-system"]);
            run_bounded(cmd, None, Duration::from_secs(10)).status.success().then_some(())
        });
        c
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut cmd = Command::new(berthctl_binary());
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.dir)
            .env_remove("BERTH_KUBECONFIG")
            .stdin(Stdio::null());
        run_bounded(cmd, stdin, Duration::from_secs(60))
    }

    fn try_ok(&self, args: &[&str]) -> Result<String, String> {
        let out = self.run(args, None);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!("exit {:?}: {}{stdout}", out.status.code(), String::from_utf8_lossy(&out.stderr)))
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        self.try_ok(args).unwrap_or_else(|e| panic!("berthctl {args:?} failed: {e}"))
    }

    /// (exit code, stderr) of a run that must fail.
    fn fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.run(args, None);
        assert!(!out.status.success(), "berthctl {args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `cluster status -o json`, parsed (None while it fails).
fn status(c: &Cluster, extra: &[&str]) -> Option<Value> {
    let mut args = vec!["cluster", "status", "-o", "json"];
    args.extend_from_slice(extra);
    c.try_ok(&args).ok().and_then(|out| serde_json::from_str(&out).ok())
}

fn servers(status: &Value) -> &Vec<Value> {
    status["servers"].as_array().expect("servers")
}

/// The status once every listed server is healthy, exactly one leads, and the leader holds
/// both leader-task leases.
fn settled(c: &Cluster, names: &[&str]) -> Value {
    eventually(Duration::from_secs(40), "a settled cluster status", || {
        let s = status(c, &[])?;
        let list = servers(&s);
        let seen: BTreeSet<&str> = list.iter().filter_map(|v| v["name"].as_str()).collect();
        let healthy = list.iter().all(|v| v["healthy"] == true);
        let leaders: Vec<&Value> = list.iter().filter(|v| v["isLeader"] == true).collect();
        let leader = leaders.first().map(|l| l["name"].as_str().unwrap_or_default().to_string());
        let tasks_on_leader = leaders.first().is_some_and(|l| l["tasks"].as_array().is_some_and(|t| t.len() == 2));
        let api_urls_known = list.iter().all(|v| v["apiURL"].as_str().is_some_and(|u| !u.is_empty()));
        (seen == names.iter().copied().collect()
            && healthy
            && leaders.len() == 1
            && tasks_on_leader
            && api_urls_known
            && s["leader"].as_str() == leader.as_deref())
        .then_some(s)
    })
}

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args).stdin(Stdio::null());
    let out = run_bounded(cmd, stdin, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of `flag` in a printed command line (`--initial-cluster a=…,b=…`).
fn flag_value(text: &str, flag: &str) -> String {
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == flag {
            return words.next().unwrap_or_default().to_string();
        }
    }
    panic!("{flag} not in:\n{text}");
}

const CONFIGMAP: &str = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"backed-up","namespace":"default"},"data":{"greeting":"hello from before the backup"}}"#;

#[tokio::test(flavor = "multi_thread")]
async fn cluster_status_members_and_snapshots_on_three_servers() {
    let mut c = Cluster::start(3).await;

    // A fresh server writes an admin kubeconfig naming itself; the real kubectl uses it.
    let own = c.servers.members[0].data_dir.join("admin.kubeconfig");
    let text = std::fs::read_to_string(&own).expect("the server wrote admin.kubeconfig");
    assert!(text.contains(&format!("server: {}", c.servers.members[0].api_url)), "{text}");
    assert!(text.contains(&format!("- {}", c.servers.members[0].client_url)), "{text}");
    let namespaces = kubectl(&own, &["get", "namespaces", "-o", "name"], None);
    assert!(namespaces.contains("namespace/kube-system"), "{namespaces}");

    // Status: all healthy, one leader that also runs the leader tasks, API URLs from the
    // servers' identity Leases.
    let s = settled(&c, &["n0", "n1", "n2"]);
    for (m, v) in c.servers.members.iter().zip(servers(&s)) {
        assert_eq!(v["apiURL"], m.api_url.as_str());
        assert_eq!(v["clientURLs"], serde_json::json!([m.client_url]));
        assert_eq!(v["peerURLs"], serde_json::json!([m.peer_url]));
        assert!(v["raftTerm"].as_u64().unwrap() >= 1 && v["revision"].as_i64().unwrap() > 1, "{v}");
    }
    let leader = s["leader"].as_str().unwrap().to_string();
    assert_eq!(s["tasks"]["berth-scheduler"], leader.as_str());
    assert_eq!(s["tasks"]["berth-controller-manager"], leader.as_str());
    let table = c.ok(&["cluster", "status"]);
    let header = table.lines().next().unwrap();
    for column in ["NAME", "API URL", "CLIENT URL", "HEALTH", "ROLE", "TERM", "COMMIT INDEX", "APPLIED INDEX"] {
        assert!(header.contains(column), "{table}");
    }
    let leader_line = table.lines().find(|l| l.starts_with(&leader)).unwrap();
    assert!(leader_line.contains(" leader ") && leader_line.contains("controller-manager,scheduler"), "{table}");
    assert_eq!(table.lines().filter(|l| l.contains(" healthy ")).count(), 3, "{table}");

    // Without etcd endpoints in the kubeconfig, the endpoints come from the identity Leases.
    let bare = c.dir.join("bare.kubeconfig");
    berth_jepsen::pki::write_admin_kubeconfig(&bare, &[c.servers.members[1].api_url.clone()]).unwrap();
    let via_leases = status(&c, &["--kubeconfig", bare.to_str().unwrap()]).expect("status through the API");
    assert_eq!(servers(&via_leases).len(), 3);

    // member list.
    let list = c.ok(&["member", "list"]);
    assert_eq!(
        list.lines().next().unwrap().split_whitespace().collect::<Vec<_>>().join(" "),
        "ID STATUS NAME PEER ADDRS CLIENT ADDRS IS LEARNER"
    );
    for m in &c.servers.members {
        let line = list.lines().find(|l| l.contains(&format!(" {} ", m.name))).expect("every member listed");
        assert!(line.contains("started") && line.contains(&m.peer_url) && line.ends_with("false"), "{list}");
    }
    let json: Value = serde_json::from_str(&c.ok(&["member", "list", "-o", "json"])).unwrap();
    assert_eq!(json["members"].as_array().unwrap().len(), 3);

    // A 4th server: member add (learner) prints the flags; the server started with them
    // joins; promote makes it a voter; remove takes it out.
    let mut n3 = Member::berth("n3", &c.dir.join("extra"), &[]).unwrap();
    let added = c.ok(&["member", "add", "n3", "--peer-urls", &n3.peer_url, "--learner"]);
    assert!(added.starts_with("Member ") && added.contains(" added to cluster "), "{added}");
    assert_eq!(flag_value(&added, "--initial-cluster-state"), "existing");
    let initial = flag_value(&added, "--initial-cluster");
    assert!(initial.contains(&format!("n3={}", n3.peer_url)) && initial.contains("n0="), "{added}");
    let id = added.split_whitespace().nth(1).unwrap().to_string();
    let unstarted = c.ok(&["member", "list"]);
    assert!(unstarted.lines().any(|l| l.starts_with(&id) && l.contains("unstarted") && l.ends_with("true")));
    n3.args.extend(["--initial-cluster".into(), initial, "--initial-cluster-state".into(), "existing".into()]);
    n3.start().unwrap();
    eventually(Duration::from_secs(30), "n3 started as a learner", || {
        let list = c.try_ok(&["member", "list"]).ok()?;
        list.lines()
            .any(|l| l.starts_with(&id) && l.contains(" started ") && l.contains(" n3 ") && l.ends_with("true"))
            .then_some(())
    });
    let promoted = eventually(Duration::from_secs(30), "n3 promoted", || c.try_ok(&["member", "promote", "n3"]).ok());
    assert!(promoted.starts_with(&format!("Member {id} promoted in cluster ")), "{promoted}");
    let s = settled(&c, &["n0", "n1", "n2", "n3"]);
    assert!(servers(&s).iter().all(|v| v["isLearner"] == false));
    let (_, err) = c.fails(&["member", "promote", &id]);
    assert!(err.contains("can only promote a learner member"), "{err}");
    // Stopped first (the usual order for a dead server, and a running one could renew its
    // identity Lease right after `remove` deletes it).
    n3.kill();
    let removed = c.ok(&["member", "remove", &id]);
    assert!(removed.starts_with(&format!("Member {id} removed from cluster ")), "{removed}");
    let leases = kubectl(&c.kubeconfig, &["get", "leases", "-n", "kube-system", "-o", "name"], None);
    assert!(!leases.contains("berth-server-n3"), "the removed server's identity is gone: {leases}");
    assert!(leases.contains("berth-server-n0"), "{leases}");
    let (_, err) = c.fails(&["member", "remove", "n3"]);
    assert_eq!(err.trim(), "error: no member named or with ID \"n3\"");
    settled(&c, &["n0", "n1", "n2"]);

    // Snapshot: save a consistent backup, restore it into a fresh server, read the data back.
    kubectl(&c.kubeconfig, &["apply", "-f", "-"], Some(CONFIGMAP));
    let before: Value =
        serde_json::from_str(&kubectl(&c.kubeconfig, &["get", "configmap", "backed-up", "-o", "json"], None)).unwrap();
    let backup = c.dir.join("backup.db");
    let saved = c.ok(&["snapshot", "save", backup.to_str().unwrap()]);
    assert_eq!(saved, format!("Snapshot saved at {}\n", backup.display()));
    assert!(!c.dir.join("backup.db.part").exists());
    let mut restored =
        Member::berth("r0", &c.dir.join("restored"), &["--restore-snapshot".into(), backup.display().to_string()])
            .unwrap();
    restored.start().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    restored.wait_ready(deadline, Duration::from_secs(30)).await.expect("the restored server is ready");
    let restored_config = restored.data_dir.join("admin.kubeconfig");
    let after: Value = eventually(Duration::from_secs(30), "the restored ConfigMap", || {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(&restored_config).args(["get", "configmap", "backed-up", "-o", "json"]);
        let out = run_bounded(cmd, None, Duration::from_secs(20));
        out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
    });
    assert_eq!(after["data"], before["data"]);
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    assert_eq!(after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"], "revisions carry over");
    // The restored server is a new one-member cluster of its own.
    let mut cmd = Command::new(berthctl_binary());
    cmd.args(["--kubeconfig", restored_config.to_str().unwrap(), "member", "list", "-o", "json"]);
    let out = run_bounded(cmd, None, Duration::from_secs(30));
    let members: Value = serde_json::from_slice(&out.stdout).expect("member list of the restored server");
    assert_eq!(members["members"].as_array().unwrap().len(), 1);
    assert_eq!(members["members"][0]["name"], "r0");
    restored.kill();

    // Kill the leader: it shows unhealthy, the others elect a new leader that takes the tasks.
    let index = c.servers.members.iter().position(|m| m.name == leader).unwrap();
    c.servers.members[index].kill();
    let s = eventually(Duration::from_secs(40), "a new leader with the tasks", || {
        let s = status(&c, &[])?;
        let list = servers(&s);
        let dead = list.iter().find(|v| v["name"] == leader.as_str())?;
        let new_leader = s["leader"].as_str().filter(|l| !l.is_empty() && *l != leader)?.to_string();
        (dead["healthy"] == false
            && list.iter().filter(|v| v["healthy"] == true).count() == 2
            && s["tasks"]["berth-scheduler"] == new_leader.as_str())
        .then_some(s)
    });
    let dead = servers(&s).iter().find(|v| v["name"] == leader.as_str()).unwrap();
    assert!(dead["error"].as_str().unwrap().contains(&c.servers.members[index].client_url), "{dead}");
    let out = c.run(&["cluster", "status"], None);
    assert!(out.status.success(), "an unhealthy member is reported, not an error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{leader} is unhealthy: ")), "{stderr}");
}

/// `n` consecutive free loopback ports, reserved like `free_port` does (a `flock` on
/// `/tmp/berth-ports/<port>.lock` held for the life of this process).
fn port_block(n: u16) -> u16 {
    use std::os::fd::AsRawFd;
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let dir = Path::new("/tmp/berth-ports");
    std::fs::create_dir_all(dir).unwrap();
    let start = free_port(); // a random place in the reserved range
    for step in 0..400u16 {
        let base = 20_000 + (start - 20_000 + step * 29) % (12_000 - n);
        let mut files = Vec::new();
        for port in base..base + n {
            let Ok(file) = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(format!("{port}.lock")))
            else {
                break;
            };
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0
                || std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
            {
                break;
            }
            files.push(file);
        }
        if files.len() == n as usize {
            HELD.lock().unwrap().extend(files);
            return base;
        }
    }
    panic!("no block of {n} free ports");
}

/// Stops the local cluster in `dir` when dropped, whatever happened (by `berthctl down`,
/// then SIGKILL to any recorded PID still alive).
struct DownOnDrop {
    dir: PathBuf,
    env: Vec<(String, PathBuf)>,
}

impl DownOnDrop {
    fn berthctl(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(berthctl_binary());
        cmd.args(args).env_remove("KUBECONFIG").env_remove("BERTH_KUBECONFIG").env("NO_COLOR", "1");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        run_bounded(cmd, None, Duration::from_secs(180))
    }

    fn pids(&self) -> Vec<i32> {
        let Ok(text) = std::fs::read_to_string(self.dir.join("cluster.json")) else { return vec![] };
        let state: Value = serde_json::from_str(&text).unwrap_or_default();
        ["servers", "agents"]
            .iter()
            .flat_map(|k| state[*k].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["pid"].as_i64().map(|p| p as i32))
            .collect()
    }
}

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let pids = self.pids();
        let _ = self.berthctl(&["down", "--data-dir", self.dir.to_str().unwrap()]);
        for pid in pids {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(self.dir.to_str().unwrap()) {
                // SAFETY: kill(2) on a process of this test's cluster (its cmdline names our dir).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

#[tokio::test(flavor = "multi_thread")]
async fn up_starts_a_local_cluster_and_down_stops_it() {
    let home = tempfile::Builder::new().prefix("berthctl-up").tempdir().unwrap();
    let berth_home = home.path().join("berth-home");
    let dir = berth_home.join("local"); // the default data dir under BERTH_HOME
    let cluster = DownOnDrop {
        dir: dir.clone(),
        env: vec![("HOME".into(), home.path().to_path_buf()), ("BERTH_HOME".into(), berth_home.clone())],
    };
    let base = port_block(10).to_string();
    let out = cluster.berthctl(&["up", "--servers", "3", "--agents", "1", "--base-port", &base]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "up failed: {}{stdout}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("The local cluster is ready: 3 servers and 1 agent"), "{stdout}");
    assert!(stdout.contains(&format!("export KUBECONFIG={}", dir.join("admin.kubeconfig").display())), "{stdout}");
    let pids = cluster.pids();
    assert_eq!(pids.len(), 4, "3 servers and 1 agent recorded");
    for pid in &pids {
        // SAFETY: getsid(2) only reads.
        assert_eq!(unsafe { libc::getsid(*pid) }, *pid, "each process leads its own session (Ctrl-C cannot reach it)");
    }

    // The kubeconfig it wrote works for kubectl, and berthctl finds it with no kubeconfig set.
    let nodes = kubectl(&dir.join("admin.kubeconfig"), &["get", "nodes", "--no-headers"], None);
    assert!(nodes.lines().any(|l| l.starts_with("node-1 ") && l.split_whitespace().nth(1) == Some("Ready")), "{nodes}");
    let out = cluster.berthctl(&["get", "nodes"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.lines().any(|l| l.starts_with("node-1 ") && l.split_whitespace().nth(1) == Some("Ready")), "{text}");
    let out = cluster.berthctl(&["cluster", "status", "-o", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(servers(&s).len(), 3);
    assert!(servers(&s).iter().all(|v| v["healthy"] == true), "{s}");

    // A second up finds it running and starts nothing.
    let again = cluster.berthctl(&["up", "--servers", "3"]);
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(
        text.starts_with(&format!(
            "The local cluster in {} is already running (3 servers and 1 agent).",
            dir.display()
        )),
        "{text}"
    );
    assert_eq!(cluster.pids(), pids);
    let conflicting = cluster.berthctl(&["up", "--servers", "1"]);
    assert!(!conflicting.status.success());
    assert!(String::from_utf8_lossy(&conflicting.stderr).contains("holds a cluster of 3 servers and 1 agent"));

    // down stops every process and keeps the data.
    let kubeconfig = dir.join("admin.kubeconfig");
    kubectl(&kubeconfig, &["apply", "-f", "-"], Some(CONFIGMAP));
    let backup = home.path().join("backup.db");
    let out = cluster.berthctl(&["snapshot", "save", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cluster.berthctl(&["down"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.starts_with("Stopped the local cluster (4 processes)."), "{text}");
    eventually(Duration::from_secs(10), "every process gone", || pids.iter().all(|p| !alive(*p)).then_some(()));
    assert!(dir.join("server-1").join("db").is_dir(), "the data stays");
    let out = cluster.berthctl(&["up", "--restore-snapshot", backup.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds one"), "a restore needs a new cluster");

    // --purge deletes it; a new cluster restored from the backup (every one of its three
    // servers restores the same file) has the data back.
    let out = cluster.berthctl(&["down", "--purge"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.exists(), "purged");
    let out = cluster.berthctl(&[
        "up",
        "--servers",
        "3",
        "--agents",
        "1",
        "--base-port",
        &base,
        "--restore-snapshot",
        backup.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "restored up failed: {}", String::from_utf8_lossy(&out.stderr));
    let data = kubectl(&kubeconfig, &["get", "configmap", "backed-up", "-o", "jsonpath={.data.greeting}"], None);
    assert_eq!(data, "hello from before the backup");
    let out = cluster.berthctl(&["cluster", "status", "-o", "json"]);
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(servers(&s).iter().filter(|v| v["isLeader"] == true).count(), 1, "{s}");
    let out = cluster.berthctl(&["down", "--purge"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
