//! The worker nodes of the control-plane workloads: one `berth-agent` per node (`--runtime
//! fake`, or `--runtime process` when the workload's pods must really run), each a real
//! process in its own network namespace on the harness bridge (as the servers are), so the
//! nemesis can kill, pause and partition an agent like a server. A process-runtime pod's
//! processes live in their agent's namespace and outlive the agent (as containers outlive a
//! kubelet); the network's teardown kills whatever is left in the namespace. They have no
//! cgroups to clean up: `ip netns exec` mounts a fresh /sys without /sys/fs/cgroup, so
//! agents in a namespace run their containers without cgroups.
//!
//! This module owns the agents' command lines (which servers an agent is told about, its
//! capacity) and their life cycle on a [`DbCluster`]: start, kill, restart, pause, resume.
//! Agents live in `DbCluster::agents`, dropped (killed by PID) before the network goes.

use std::path::PathBuf;

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
/// `first` (so agents spread over the servers; each starts against its first and fails
/// over between all of them).
pub fn server_flag(api_urls: &[String], first: usize) -> (String, Vec<usize>) {
    let n = api_urls.len().max(1);
    let order: Vec<usize> = (0..api_urls.len()).map(|i| (first + i) % n).collect();
    let flag = order.iter().map(|&i| api_urls[i].as_str()).collect::<Vec<_>>().join(",");
    (flag, order)
}

impl DbCluster {
    /// Adds `count` agents `a1…aN` to the network and starts them against the servers'
    /// Kubernetes API (agent i starts at server i mod n), with `runtime` (`fake` or
    /// `process`).
    pub fn start_agents(&mut self, count: usize, runtime: &str) -> Result<(), HarnessError> {
        let program = berth_agent_binary()?;
        let names = self.names();
        let api_urls: Vec<String> = names.iter().map(|n| self.api_url(n)).collect::<Result<_, _>>()?;
        for i in 0..count {
            let name = format!("a{}", i + 1);
            let ip = self.net.add_node(&name)?.ip;
            let (flag, used) = server_flag(&api_urls, i);
            let data_dir = self.dir.join("data").join(&name);
            let kubeconfig = crate::pki::write_node_kubeconfig(&self.dir.join("data"), &name, &api_urls)?;
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
                    runtime,
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
                    "--kubeconfig",
                    &kubeconfig.display().to_string(),
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
        Ok(())
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

/// What an agent's load balancer logs once it is through to a new server.
pub const RECOVERED: &str = "first response through the new API server";

/// One `first response` line of an agent's log: (when, server, outage_ms) (pure).
pub fn recovered_line(line: &str) -> Option<(k8s_openapi::jiff::Timestamp, String, u64)> {
    if !line.contains(RECOVERED) {
        return None;
    }
    let line = crate::procs::strip_ansi(line);
    let when = line.split_whitespace().next()?.parse().ok()?;
    let field = |name: &str| line.split_whitespace().find_map(|w| w.strip_prefix(name)).map(str::to_string);
    Some((when, field("server=")?, field("outage_ms=")?.parse().ok()?))
}

impl DbCluster {
    /// Every failover the agents' logs show, in log order per agent.
    pub fn agent_failovers(&self) -> Vec<crate::history::AgentGap> {
        let mut gaps = vec![];
        for agent in &self.agents {
            let log = std::fs::read_to_string(&agent.member.log).unwrap_or_default();
            for (_, server, outage_ms) in log.lines().filter_map(recovered_line) {
                gaps.push(crate::history::AgentGap { agent: agent.name.clone(), server, outage_ms });
            }
        }
        gaps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_flag_lists_every_server_from_the_agents_own_first() {
        let urls: Vec<String> = (1..=3).map(|i| format!("http://10.0.0.{i}:6443")).collect();
        let (flag, used) = server_flag(&urls, 1);
        assert_eq!(flag, "http://10.0.0.2:6443,http://10.0.0.3:6443,http://10.0.0.1:6443");
        assert_eq!(used, vec![1, 2, 0]);
        let (_, used) = server_flag(&urls, 4);
        assert_eq!(used, vec![1, 2, 0]);
    }
}
