//! The database under test: N real server processes (Berth or etcd 3.5), each inside its own
//! network namespace on the harness's private bridge, listening on its namespace address
//! (client port 2379, peer port 2380 — every node has its own IP, so the ports are fixed).
//!
//! This module owns the processes and their life cycle as the nemesis needs it: kill (-9),
//! restart, pause/resume, remove a member and add it back with a wiped data directory, skew
//! its wall clock. Processes are dropped (killed by PID) before the network is destroyed:
//! `nodes` is declared before `net` so Rust drops them in that order.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::clock::Faketime;
use crate::disk::Tmpfs;
use crate::net::Network;
use crate::procs::{member_args, server_program, Db, Member, MemberSettings};
use crate::HarnessError;

const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;
/// Berth's Kubernetes API port (on the node's address, so agents and the harness reach it).
const API_PORT: u16 = 6443;

/// One server node.
pub struct DbNode {
    pub name: String,
    pub member: Member,
    /// The control file through which libfaketime skews this node's clock, if enabled.
    pub clock_file: Option<PathBuf>,
    pub paused: bool,
    /// Removed from the membership (its process is stopped and its data wiped).
    pub removed: bool,
}

pub struct DbCluster {
    pub db: Db,
    // Dropped first: processes die before their namespaces go.
    pub nodes: Vec<DbNode>,
    /// Worker nodes of the control-plane workloads (none for the etcd-API workloads).
    pub agents: Vec<crate::agents::AgentNode>,
    /// Each node's data disk when the run has small disks (`disk-full`); unmounted after
    /// the processes are gone.
    disks: Vec<Tmpfs>,
    pub net: Network,
    pub dir: PathBuf,
    program: PathBuf,
    heartbeat_ms: u64,
    election_ms: u64,
}

/// The flags every Jepsen-run Berth server gets on top of [`member_args`]:
/// * nodes cut off for most of a fault (3 s + 1 s of the default 5 s) lose their pods, so
///   the control-plane workloads see evictions;
/// * a snapshot (and log purge) every 1,000 entries, as etcd's Jepsen tests do with a low
///   `--snapshot-count`, so snapshots are taken, sent to lagging members and installed
///   during a run (and their failpoints fire);
/// * the `berth_fence` debug lines the fencing checker reads.
fn harness_server_args() -> Vec<String> {
    [
        "--node-monitor-grace-period",
        "3s",
        "--pod-eviction-timeout",
        "1s",
        "--snapshot-count",
        "1000",
        "--log-level",
        "info,openraft=warn,berth_fence=debug",
    ]
    .map(String::from)
    .to_vec()
}

impl DbCluster {
    /// Lays out `net`'s nodes as a new cluster under `dir` and starts them all. With
    /// `faketime`, every node runs under libfaketime so the clock nemesis can skew it; with
    /// `disk_mb`, every node's data directory is a tmpfs of that size (the disk-full nemesis).
    pub fn start(
        db: Db,
        net: Network,
        dir: &Path,
        faketime: Option<&Faketime>,
        disk_mb: Option<u64>,
    ) -> Result<DbCluster, HarnessError> {
        let program = server_program(db)?;
        std::fs::create_dir_all(dir.join("logs"))?;
        std::fs::create_dir_all(dir.join("data"))?;
        let names: Vec<String> = net.nodes().iter().map(|n| n.name.clone()).collect();
        let mut cluster = DbCluster {
            db,
            nodes: vec![],
            agents: vec![],
            disks: vec![],
            net,
            dir: dir.to_path_buf(),
            program,
            // etcd's defaults; the nemesis's fault windows are long compared with them.
            heartbeat_ms: 100,
            election_ms: 1000,
        };
        let initial = cluster.initial_cluster(&names);
        if let Some(mb) = disk_mb {
            for name in &names {
                // Pushed one by one: a failed mount still unmounts the earlier ones on drop.
                let disk = Tmpfs::mount(&dir.join("data").join(name), mb)?;
                cluster.disks.push(disk);
            }
        }
        for name in &names {
            let mut member = cluster.member_for(name, &initial, false)?;
            let clock_file = match faketime {
                Some(ft) => {
                    let file = dir.join("clock").join(name);
                    std::fs::create_dir_all(dir.join("clock"))?;
                    crate::clock::set_offset(&file, 0.0)?;
                    member.env = ft.env_for(&file);
                    Some(file)
                }
                None => None,
            };
            cluster.nodes.push(DbNode { name: name.clone(), member, clock_file, paused: false, removed: false });
        }
        for node in &mut cluster.nodes {
            node.member.start()?;
        }
        Ok(cluster)
    }

    /// (client URL, peer URL) of `name`.
    pub fn urls(&self, name: &str) -> Result<(String, String), HarnessError> {
        let ip = self.net.node(name).ok_or_else(|| HarnessError::Rpc(format!("no node {name}")))?.ip;
        // Berth serves TLS on both etcd ports; the reference etcd plain HTTP.
        let scheme = if self.db == Db::Berth { "https" } else { "http" };
        Ok((format!("{scheme}://{ip}:{CLIENT_PORT}"), format!("{scheme}://{ip}:{PEER_PORT}")))
    }

    /// Berth's Kubernetes API URL on `name`.
    pub fn api_url(&self, name: &str) -> Result<String, HarnessError> {
        let ip = self.net.node(name).ok_or_else(|| HarnessError::Rpc(format!("no node {name}")))?.ip;
        Ok(format!("https://{ip}:{API_PORT}"))
    }

    fn initial_cluster(&self, names: &[String]) -> String {
        names
            .iter()
            .filter_map(|n| self.urls(n).ok().map(|(_, peer)| format!("{n}={peer}")))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The process description of `name`, run inside its namespace.
    fn member_for(&self, name: &str, initial_cluster: &str, existing: bool) -> Result<Member, HarnessError> {
        let (client_url, peer_url) = self.urls(name)?;
        let data_dir = self.dir.join("data").join(name);
        let api_url = self.api_url(name)?;
        let settings = MemberSettings {
            db: self.db,
            name,
            client_url: &client_url,
            peer_url: &peer_url,
            data_dir: &data_dir,
            initial_cluster,
            existing,
            api_url: (self.db == Db::Berth).then_some(api_url.as_str()),
            heartbeat_ms: self.heartbeat_ms,
            election_ms: self.election_ms,
        };
        // `ip netns exec` execs the server in place, so the PID we hold is the server's
        // and signals reach it directly.
        let mut args = self.net.exec_prefix(name);
        let program = PathBuf::from(args.remove(0));
        args.push(self.program.display().to_string());
        args.extend(member_args(&settings));
        if self.db == Db::Berth {
            args.extend(harness_server_args());
        }
        let log = self.dir.join("logs").join(format!("{name}.log"));
        let mut member = Member::new(name, program, args, (client_url, peer_url), data_dir, log);
        if self.db == Db::Berth {
            member.api_url = api_url;
        }
        Ok(member)
    }

    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    pub fn node(&self, name: &str) -> Option<&DbNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    fn node_mut(&mut self, name: &str) -> Result<&mut DbNode, HarnessError> {
        self.nodes.iter_mut().find(|n| n.name == name).ok_or_else(|| HarnessError::Rpc(format!("no node {name}")))
    }

    /// A client for `name` with the given per-call deadline.
    pub fn client(&self, name: &str, timeout: Duration) -> Result<Client, HarnessError> {
        let (url, _) = self.urls(name)?;
        Client::new(name, &url, timeout).map_err(|e| HarnessError::Rpc(e.message))
    }

    /// Relative paths (from the run directory) of the node logs.
    pub fn log_files(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("logs/{}.log", n.name)).collect()
    }

    /// Waits until every node that should be running answers a linearizable read.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        for node in self.nodes.iter_mut().filter(|n| !n.removed) {
            node.member.wait_ready(deadline, timeout).await?;
        }
        Ok(())
    }

    /// SIGKILL (the process is reaped; `restart` brings it back on the same data).
    pub fn kill(&mut self, name: &str) -> Result<(), HarnessError> {
        let node = self.node_mut(name)?;
        node.member.kill();
        node.paused = false;
        Ok(())
    }

    /// Starts a killed node again (no-op if running or removed).
    pub fn restart(&mut self, name: &str) -> Result<(), HarnessError> {
        let node = self.node_mut(name)?;
        if node.removed {
            return Ok(());
        }
        node.member.start()
    }

    pub fn pause(&mut self, name: &str) -> Result<(), HarnessError> {
        let node = self.node_mut(name)?;
        node.member.signal(libc::SIGSTOP);
        node.paused = true;
        Ok(())
    }

    pub fn resume(&mut self, name: &str) -> Result<(), HarnessError> {
        let node = self.node_mut(name)?;
        node.member.signal(libc::SIGCONT);
        node.paused = false;
        Ok(())
    }

    /// Sets `name`'s wall-clock offset (seconds); needs the cluster started with faketime.
    pub fn set_clock_offset(&mut self, name: &str, seconds: f64) -> Result<(), HarnessError> {
        let node = self.node_mut(name)?;
        match &node.clock_file {
            Some(file) => crate::clock::set_offset(file, seconds),
            None => Err(HarnessError::Rpc("clock skew needs libfaketime (apt-get install faketime)".into())),
        }
    }

    /// Every running, unpaused, member node (candidates for clients and admin calls).
    pub fn live_names(&mut self) -> Vec<String> {
        let mut live = vec![];
        for n in &mut self.nodes {
            if !n.removed && !n.paused && n.member.is_running() {
                live.push(n.name.clone());
            }
        }
        live
    }

    /// The leader's node name as the live nodes report it (the most common answer), if any.
    pub async fn leader(&mut self) -> Option<String> {
        let mut votes: std::collections::BTreeMap<u64, usize> = Default::default();
        let mut ids: std::collections::BTreeMap<u64, String> = Default::default();
        for name in self.live_names() {
            let Ok(client) = self.client(&name, Duration::from_millis(500)) else { continue };
            if let Ok((me, leader)) = client.status().await {
                ids.insert(me, name.clone());
                if leader != 0 {
                    *votes.entry(leader).or_default() += 1;
                }
            }
        }
        let (leader, _) = votes.into_iter().max_by_key(|(_, n)| *n)?;
        ids.get(&leader).cloned()
    }

    /// A client on a live member other than `name`, for membership changes about `name`.
    fn admin_client_besides(&mut self, name: &str) -> Result<Client, HarnessError> {
        let via = self
            .live_names()
            .into_iter()
            .find(|n| n != name)
            .ok_or_else(|| HarnessError::Rpc("no live member".into()))?;
        self.client(&via, Duration::from_secs(5))
    }

    /// Removes `name` from the membership through another live member, then stops it and
    /// wipes its data directory (it can only come back as a new member).
    pub async fn remove_member(&mut self, name: &str) -> Result<(), HarnessError> {
        let client = self.admin_client_besides(name)?;
        let members = client.member_list().await.map_err(|e| HarnessError::Rpc(e.message))?;
        let (_, peer_url) = self.urls(name)?;
        let member = members
            .iter()
            .find(|m| m.peer_ur_ls.contains(&peer_url))
            .ok_or_else(|| HarnessError::Rpc(format!("{name} is not a member")))?;
        client.member_remove(member.id).await.map_err(|e| HarnessError::Rpc(e.message))?;
        let node = self.node_mut(name)?;
        node.member.kill();
        node.removed = true;
        node.paused = false;
        let data = node.member.data_dir.clone();
        // Its contents, not the directory: with small disks it is a mount point.
        if data.exists() {
            for entry in std::fs::read_dir(&data)? {
                let path = entry?.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
            }
        }
        Ok(())
    }

    /// Adds a removed node back as a fresh member (`member add`, then start it with
    /// `--initial-cluster-state existing` and an empty data directory).
    pub async fn add_member_back(&mut self, name: &str) -> Result<(), HarnessError> {
        let client = self.admin_client_besides(name)?;
        let (_, peer_url) = self.urls(name)?;
        let members = client.member_add(&peer_url).await.map_err(|e| HarnessError::Rpc(e.message))?;
        let initial = members
            .iter()
            .filter_map(|m| {
                let url = m.peer_ur_ls.first()?;
                let member_name = if m.name.is_empty() { name.to_string() } else { m.name.clone() };
                Some(format!("{member_name}={url}"))
            })
            .collect::<Vec<_>>()
            .join(",");
        let mut fresh = self.member_for(name, &initial, true)?;
        let node = self.node_mut(name)?;
        fresh.env = std::mem::take(&mut node.member.env);
        node.member = fresh;
        node.removed = false;
        node.member.start()
    }

    /// Heals every process-level fault: resumes paused nodes, restarts killed ones, resets
    /// clocks. (Removed members are added back by the member nemesis's own heal.)
    pub fn heal_processes(&mut self) -> Result<Vec<String>, HarnessError> {
        let mut done = vec![];
        for i in 0..self.nodes.len() {
            let name = self.nodes[i].name.clone();
            if self.nodes[i].paused {
                self.resume(&name)?;
                done.push(format!("resumed {name}"));
            }
            if !self.nodes[i].removed && !self.nodes[i].member.is_running() {
                self.restart(&name)?;
                done.push(format!("restarted {name}"));
            }
            if self.nodes[i].clock_file.is_some() {
                self.set_clock_offset(&name, 0.0)?;
            }
        }
        Ok(done)
    }

    /// Fills `name`'s data disk (needs small disks); returns the ballast's size in bytes.
    pub fn fill_disk(&self, name: &str) -> Result<u64, HarnessError> {
        crate::disk::fill(&self.disk_of(name)?.path)
    }

    /// Removes the ballast from `name`'s data disk.
    pub fn drain_disk(&self, name: &str) -> Result<(), HarnessError> {
        crate::disk::drain(&self.disk_of(name)?.path)
    }

    fn disk_of(&self, name: &str) -> Result<&Tmpfs, HarnessError> {
        let data = self.dir.join("data").join(name);
        self.disks.iter().find(|d| d.path == data).ok_or_else(|| {
            HarnessError::Config(format!("{name} has no disk of its own (the run was started without small disks)"))
        })
    }

    /// Stops every process (by PID) and removes the network. Idempotent.
    pub fn teardown(&mut self) {
        for agent in &mut self.agents {
            if agent.paused {
                agent.member.signal(libc::SIGCONT);
            }
            agent.member.kill();
        }
        for node in &mut self.nodes {
            if node.paused {
                node.member.signal(libc::SIGCONT);
            }
            node.member.kill();
        }
        for disk in &mut self.disks {
            disk.unmount();
        }
        self.net.destroy();
    }
}

impl Drop for DbCluster {
    fn drop(&mut self) {
        self.teardown();
    }
}
