//! The worker nodes of the control-plane workloads: one `berth-agent --runtime fake` per
//! node, each a real process in its own network namespace on the harness bridge (as the
//! servers are), so the nemesis can kill, pause and partition an agent like a server.
//!
//! This module owns the agents' command lines (which servers an agent is told about, its
//! capacity) and their life cycle on a [`DbCluster`]: start, kill, restart, pause, resume.
//! Agents live in `DbCluster::agents`, dropped (killed by PID) before the network goes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::db::DbCluster;
use crate::procs::{berth_agent_binary, Member};
use crate::HarnessError;

/// The kubelet endpoint port of every agent (each has its own IP, so the port is fixed).
const AGENT_PORT: u16 = 10250;

/// What every hollow node offers the scheduler: small, so that the bind workload's pods
/// fill the nodes and the scheduler must refuse some (over-commit is then possible to get
/// wrong). 3 nodes hold 24 pods and 6 CPUs.
pub const NODE_CAPACITY: &str = "cpu=2,memory=2Gi,pods=8";

/// One agent node.
pub struct AgentNode {
    pub name: String,
    pub member: Member,
    pub paused: bool,
    /// The servers (names) the agent was told about, in the order given; the first one is
    /// the server it starts against.
    pub servers: Vec<String>,
}

/// The `--server` value for an agent: every server's API URL, comma-separated, starting at
/// `first` (so agents spread over the servers). An agent binary that takes only one URL
/// gets the first one alone (see [`agent_accepts_server_list`]).
pub fn server_flag(api_urls: &[String], first: usize, accepts_list: bool) -> (String, Vec<usize>) {
    let n = api_urls.len().max(1);
    let order: Vec<usize> = (0..api_urls.len()).map(|i| (first + i) % n).collect();
    let used: Vec<usize> = if accepts_list { order } else { order.into_iter().take(1).collect() };
    let flag = used.iter().map(|&i| api_urls[i].as_str()).collect::<Vec<_>>().join(",");
    (flag, used)
}

/// Whether this `berth-agent` takes a comma-separated `--server` list. Asked once per
/// process: an agent given two unreachable URLs either rejects the flag at once (exit 2
/// naming `--server`) or keeps retrying them, in which case we stop it (by PID).
pub fn agent_accepts_server_list(program: &Path) -> bool {
    static ACCEPTS: OnceLock<bool> = OnceLock::new();
    *ACCEPTS.get_or_init(|| {
        let Ok(dir) = tempfile::tempdir() else { return false };
        let child = Command::new(program)
            .args(["--server", "http://127.0.0.1:1,http://127.0.0.1:2", "--node-name", "probe"])
            .args(["--runtime", "fake", "--listen-port", "0", "--log-level", "warn", "--data-dir"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let Ok(mut child) = child else { return false };
        let deadline = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                tracing::warn!(stderr = %err.trim(), "berth-agent rejects a --server list; agents get one server each");
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        true
    })
}

impl DbCluster {
    /// Adds `count` agents `a1…aN` to the network and starts them against the servers'
    /// Kubernetes API (agent i starts at server i mod n). Returns notes for the report.
    pub fn start_agents(&mut self, count: usize) -> Result<Vec<String>, HarnessError> {
        let program = berth_agent_binary()?;
        let names = self.names();
        let api_urls: Vec<String> = names.iter().map(|n| self.api_url(n)).collect::<Result<_, _>>()?;
        let accepts = agent_accepts_server_list(&program);
        let mut notes = vec![];
        if !accepts {
            notes.push("berth-agent rejects a comma-separated --server: each agent knows one server only".into());
        }
        for i in 0..count {
            let name = format!("a{}", i + 1);
            let ip = self.net.add_node(&name)?.ip;
            let (flag, used) = server_flag(&api_urls, i, accepts);
            let data_dir = self.dir.join("data").join(&name);
            let mut args = self.net.exec_prefix(&name);
            let prefix = PathBuf::from(args.remove(0));
            args.push(program.display().to_string());
            args.extend(
                [
                    "--server",
                    &flag,
                    "--node-name",
                    &name,
                    "--runtime",
                    "fake",
                    "--node-ip",
                    &ip.to_string(),
                    "--listen-port",
                    &AGENT_PORT.to_string(),
                    "--capacity",
                    NODE_CAPACITY,
                    "--lease-seconds",
                    "2",
                    "--data-dir",
                    &data_dir.display().to_string(),
                ]
                .map(String::from),
            );
            let log = self.dir.join("logs").join(format!("{name}.log"));
            let mut member =
                Member::new(&name, prefix, args, (format!("http://{ip}:{AGENT_PORT}"), String::new()), data_dir, log);
            member.start()?;
            let servers = used.iter().map(|&s| names[s].clone()).collect();
            self.agents.push(AgentNode { name, member, paused: false, servers });
        }
        Ok(notes)
    }

    pub fn agent_names(&self) -> Vec<String> {
        self.agents.iter().map(|a| a.name.clone()).collect()
    }

    pub fn agent(&self, name: &str) -> Option<&AgentNode> {
        self.agents.iter().find(|a| a.name == name)
    }

    fn agent_mut(&mut self, name: &str) -> Result<&mut AgentNode, HarnessError> {
        self.agents.iter_mut().find(|a| a.name == name).ok_or_else(|| HarnessError::Rpc(format!("no agent {name}")))
    }

    pub fn kill_agent(&mut self, name: &str) -> Result<(), HarnessError> {
        let agent = self.agent_mut(name)?;
        agent.member.kill();
        agent.paused = false;
        Ok(())
    }

    pub fn pause_agent(&mut self, name: &str) -> Result<(), HarnessError> {
        let agent = self.agent_mut(name)?;
        agent.member.signal(libc::SIGSTOP);
        agent.paused = true;
        Ok(())
    }

    /// Resumes a paused agent and restarts a killed one (same data directory).
    pub fn heal_agent(&mut self, name: &str) -> Result<(), HarnessError> {
        let agent = self.agent_mut(name)?;
        if agent.paused {
            agent.member.signal(libc::SIGCONT);
            agent.paused = false;
        }
        agent.member.start()
    }

    /// Heals every agent; says what it did.
    pub fn heal_agents(&mut self) -> Result<Vec<String>, HarnessError> {
        let mut done = vec![];
        for i in 0..self.agents.len() {
            let name = self.agents[i].name.clone();
            let was_down = self.agents[i].paused || !self.agents[i].member.is_running();
            self.heal_agent(&name)?;
            if was_down {
                done.push(format!("agent {name} back"));
            }
        }
        Ok(done)
    }

    /// Relative paths of the agents' logs.
    pub fn agent_log_files(&self) -> Vec<String> {
        self.agents.iter().map(|a| format!("logs/{}.log", a.name)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_flag_lists_every_server_from_the_agents_own_first() {
        let urls: Vec<String> = (1..=3).map(|i| format!("http://10.0.0.{i}:6443")).collect();
        let (flag, used) = server_flag(&urls, 1, true);
        assert_eq!(flag, "http://10.0.0.2:6443,http://10.0.0.3:6443,http://10.0.0.1:6443");
        assert_eq!(used, vec![1, 2, 0]);
        let (flag, used) = server_flag(&urls, 4, false);
        assert_eq!(flag, "http://10.0.0.2:6443");
        assert_eq!(used, vec![1]);
    }
}
