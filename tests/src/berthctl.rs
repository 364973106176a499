//! Black-box harness for `berthctl`: a cluster of real `berth-server` processes plus a
//! `berth-agent` (process runtime, so pods really run and have logs), an admin kubeconfig
//! listing every server (Berth's `berth.dev/servers` extension), and helpers that run the
//! real `berthctl` binary against it. Every process is killed when the harness drops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use berth_jepsen::procs::{free_port, ClusterSpec, Db, ProcessCluster};
use berth_testkit::blocking::eventually;
pub use berth_testkit::{KillOnDrop, SharedLines};

/// What runs the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    /// No agent: pods stay Pending.
    None,
    /// One `berth-agent --runtime process` node named `node-1` (pods need a `command`).
    Process,
    /// One agent process with this many hollow nodes (`--runtime fake`; `hollow-node-*`).
    Fake(usize),
}

/// A live cluster for `berthctl` tests.
pub struct CtlCluster {
    pub servers: ProcessCluster,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    agents: Vec<Child>,
}

/// The `berthctl` binary next to the test executable (or `$BERTHCTL`).
pub fn berthctl_binary() -> PathBuf {
    let build = "cargo build -p berth-ctl; scripts/test builds every binary first";
    berth_jepsen::procs::sibling_binary("berthctl", "BERTHCTL", build).expect("berthctl built")
}

impl CtlCluster {
    /// Starts `servers` servers and the agent, waits for the API of each server and (with an
    /// agent) for its node(s) to be Ready.
    pub async fn start(servers: usize, agent: Agent) -> CtlCluster {
        CtlCluster::start_with_server_args(servers, agent, &[]).await
    }

    /// [`CtlCluster::start`] with extra `berth-server` flags (e.g. a short
    /// `--node-monitor-grace-period`).
    pub async fn start_with_server_args(servers: usize, agent: Agent, server_args: &[&str]) -> CtlCluster {
        let dir = tempfile::Builder::new().prefix("berthctl-test").tempdir().expect("tempdir").keep();
        let mut spec = ClusterSpec::new(Db::Berth, servers);
        spec.extra_args = server_args.iter().map(|a| a.to_string()).collect();
        let cluster = ProcessCluster::start(&spec, &dir.join("servers")).expect("starting berth-server processes");
        let mut this = CtlCluster { servers: cluster, kubeconfig: dir.join("kubeconfig"), dir, agents: Vec::new() };
        this.servers.wait_ready(Duration::from_secs(30)).await.expect("store ready");
        this.write_kubeconfig();
        eventually(Duration::from_secs(30), "every API server ready", || {
            this.api_urls().iter().all(|u| matches!(crate::api_get(u, "/readyz", None), Ok((200, _)))).then_some(())
        });
        eventually(Duration::from_secs(30), "system namespaces", || {
            this.try_ok(&["get", "namespace", "kube-system", "-o", "name"]).ok().map(|_| ())
        });
        this.start_agent_on(agent, 0);
        this
    }

    /// Starts the agent talking to server `server` (an agent follows one API server) and
    /// waits until its node(s) are Ready.
    pub fn start_agent_on(&mut self, agent: Agent, server: usize) {
        if agent == Agent::None {
            return;
        }
        self.start_agent(agent, server);
        let expected = match agent {
            Agent::Fake(n) => n,
            _ => 1,
        };
        eventually(Duration::from_secs(60), "nodes Ready", || {
            let out = self.try_ok(&["get", "nodes", "--no-headers"]).ok()?;
            (out.lines().filter(|l| l.split_whitespace().nth(1) == Some("Ready")).count() >= expected).then_some(())
        });
    }

    fn write_kubeconfig(&self) {
        self.write_kubeconfig_to(&self.kubeconfig, 0);
    }

    /// Writes a kubeconfig whose primary server is server `first` (the others follow in the
    /// `berth.dev/servers` extension) and returns its path.
    pub fn kubeconfig_preferring(&self, first: usize) -> PathBuf {
        let path = self.dir.join(format!("kubeconfig-{first}"));
        self.write_kubeconfig_to(&path, first);
        path
    }

    fn write_kubeconfig_to(&self, path: &Path, first: usize) {
        let mut api_servers = self.api_urls();
        let len = api_servers.len();
        api_servers.rotate_left(first % len);
        let servers =
            berth_proto::kubeconfig::ServersExtension { api_servers, etcd_endpoints: self.servers.endpoints() };
        let admin = berth_jepsen::pki::admin_credentials();
        let text = berth_proto::kubeconfig::admin_kubeconfig_with_etcd_yaml("berth", &servers, Some(&admin));
        std::fs::write(path, text).expect("writing the kubeconfig");
    }

    /// `--server URL --kubeconfig PATH` for agent `node` on server `server`: its node
    /// certificate.
    pub fn agent_api_flags(&self, node: &str, server: usize) -> Vec<String> {
        let kubeconfig = berth_jepsen::pki::write_node_kubeconfig(&self.dir, node, &self.api_urls())
            .expect("writing the node kubeconfig");
        self.api_flags(server, kubeconfig)
    }

    /// [`CtlCluster::agent_api_flags`] for a hollow-node agent `prefix` (`--fake-nodes`),
    /// which acts for many nodes (see `berth_jepsen::pki::write_hollow_kubeconfig`).
    pub fn hollow_api_flags(&self, prefix: &str, server: usize) -> Vec<String> {
        let kubeconfig = berth_jepsen::pki::write_hollow_kubeconfig(&self.dir, prefix, &self.api_urls())
            .expect("writing the hollow nodes' kubeconfig");
        self.api_flags(server, kubeconfig)
    }

    fn api_flags(&self, server: usize, kubeconfig: PathBuf) -> Vec<String> {
        vec![
            "--server".into(),
            self.api_urls()[server].clone(),
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
        ]
    }

    fn start_agent(&mut self, agent: Agent, server: usize) {
        match agent {
            Agent::Process => {
                let api_flags = self.agent_api_flags("node-1", server);
                self.spawn_agent("node-1", &api_flags, &["--runtime", "process", "--stop-containers-on-exit"])
            }
            Agent::Fake(n) => {
                let api_flags = self.hollow_api_flags("hollow", server);
                self.spawn_agent("hollow", &api_flags, &["--runtime", "fake", "--fake-nodes", &n.to_string()])
            }
            Agent::None => {}
        }
    }

    /// Starts one more `berth-agent --runtime process` node named `node`, reaching the API
    /// as `api_flags` say (`--server URL[,URL…]` or `--kubeconfig PATH`), and waits until
    /// it is Ready. Its log is `<dir>/agent-<node>.log`.
    pub fn start_process_agent(&mut self, node: &str, api_flags: &[String]) {
        self.spawn_agent(node, api_flags, &["--runtime", "process", "--stop-containers-on-exit"]);
        eventually(Duration::from_secs(60), "the new node Ready", || {
            let out = self.try_ok(&["get", "node", node, "--no-headers"]).ok()?;
            (out.split_whitespace().nth(1) == Some("Ready")).then_some(())
        });
    }

    /// Where the agent of node `node` (`node-1`, `hollow` for hollow nodes) logs.
    pub fn agent_log(&self, node: &str) -> PathBuf {
        self.dir.join(format!("agent-{node}.log"))
    }

    fn spawn_agent(&mut self, node: &str, api_flags: &[String], runtime_flags: &[&str]) {
        let bin = berth_jepsen::procs::berth_agent_binary().expect("berth-agent built");
        let log = std::fs::File::create(self.agent_log(node)).expect("agent log");
        let mut cmd = Command::new(bin);
        cmd.args(api_flags)
            .arg("--data-dir")
            .arg(self.dir.join(format!("agent-{node}")))
            .args(["--listen-port", &free_port().to_string(), "--lease-seconds", "2", "--node-name", node])
            .args(["--node-ip", "127.0.0.1"])
            .args(runtime_flags)
            .env("NO_COLOR", "1");
        cmd.stdout(log.try_clone().expect("log fd")).stderr(log);
        self.agents.push(cmd.spawn().expect("starting berth-agent"));
    }

    /// Every server's Kubernetes API URL.
    pub fn api_urls(&self) -> Vec<String> {
        self.servers.members.iter().map(|m| m.api_url.clone()).collect()
    }

    /// A `berthctl` command with this cluster's kubeconfig (and a private HOME).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(berthctl_binary());
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.dir)
            .env_remove("BERTH_KUBECONFIG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    }

    /// The index of the server that runs the leader tasks (holder of the `berth-scheduler` Lease).
    pub fn leader_index(&self) -> Option<usize> {
        let holder = self
            .try_ok(&["get", "lease", "berth-scheduler", "-n", "kube-system", "-o", "jsonpath={.spec.holderIdentity}"])
            .ok()?;
        self.servers.members.iter().position(|m| m.name == holder.trim())
    }

    /// Runs berthctl to completion (bounded: 60 s).
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run_bounded(self.command(args), stdin, Duration::from_secs(60))
    }

    /// stdout of a successful run, or `Err(stderr)`.
    pub fn try_ok(&self, args: &[&str]) -> Result<String, String> {
        let out = self.run(args, None);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!("exit {:?}: {stderr}{stdout}", out.status.code()))
        }
    }

    /// stdout of a run that must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        self.try_ok(args).unwrap_or_else(|e| panic!("berthctl {args:?} failed: {e}"))
    }

    /// stdout of a run with `stdin`, which must succeed.
    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, Some(stdin));
        assert!(out.status.success(), "berthctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// (exit code, stderr) of a run that must fail.
    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.run(args, None);
        assert!(
            !out.status.success(),
            "berthctl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Starts a long-running berthctl (e.g. `get -w`) with piped stdout; kill it when done.
    pub fn spawn(&self, args: &[&str]) -> KillOnDrop {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        KillOnDrop(cmd.spawn().expect("starting berthctl"))
    }
}

impl Drop for CtlCluster {
    fn drop(&mut self) {
        self.stop_agent();
        for member in &mut self.servers.members {
            member.kill();
        }
        // Keep the logs of a failed test for the post-mortem; clean up after a passing one.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl CtlCluster {
    /// Stops every agent (SIGTERM, so `--stop-containers-on-exit` stops its pods; SIGKILL
    /// after 10 s).
    pub fn stop_agent(&mut self) {
        for mut agent in std::mem::take(&mut self.agents) {
            // SIGTERM lets --stop-containers-on-exit stop the pods it started.
            unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while agent.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = agent.kill();
            let _ = agent.wait();
        }
    }
}

/// Runs `cmd`, feeding `stdin`, killing it after `limit`.
pub fn run_bounded(mut cmd: Command, stdin: Option<&str>, limit: Duration) -> Output {
    use std::io::Write;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("spawning");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("writing stdin");
    }
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if rx.recv_timeout(limit).is_err() {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let out = child.wait_with_output().expect("waiting");
    let _ = tx.send(());
    out
}
