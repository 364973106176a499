//! The nemesis: injects faults on a schedule — quiet, fault, hold, heal, repeat — until the
//! test's time limit, then heals everything. Each fault and heal is recorded in the history
//! (process [`NEMESIS`]) with what exactly was done, so reports can shade fault windows and
//! a reader can tell which node was hit.
//!
//! Fault choice is pure (`plan`) and driven by the test's seed; applying it is I/O on the
//! [`DbCluster`] and its [`Network`](crate::net::Network).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::db::DbCluster;
use crate::failpoint;
use crate::history::{Call, OpType, NEMESIS};
use crate::net::LinkFault;
use crate::partition::{self, PartitionKind};
use crate::recorder::Recorder;
use crate::HarnessError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NemesisKind {
    /// SIGKILL a minority (often the leader), restart at heal.
    Kill,
    /// SIGSTOP a minority, SIGCONT at heal.
    Pause,
    /// Network partition (isolate leader, halves, majorities ring, bridge).
    Partition,
    /// Delay/jitter/loss on some nodes' links.
    Netem,
    /// Remove a member (stop it, wipe its data), add it back fresh at heal.
    Member,
    /// Skew some nodes' wall clocks (libfaketime).
    Clock,
    /// SIGKILL every member at once, restart all at heal (the durability workload's fault).
    KillAll,
    /// SIGKILL the Raft leader (the server running the scheduler and controllers).
    KillLeader,
    /// SIGKILL one agent, restart it (same data directory) at heal.
    KillAgent,
    /// SIGSTOP one agent, SIGCONT at heal.
    PauseAgent,
    /// Cut one agent off from every server.
    PartitionAgent,
    /// Cut one agent off from the server it was started against (the first it knows).
    PartitionAgentServer,
    /// SIGKILL the server one agent was started against.
    KillAgentServer,
    /// Enable one of the store's failpoints on one server (a crash or a stall at that
    /// point); at heal remove it everywhere and restart the server if it crashed.
    Failpoint,
    /// Fill one server's data disk (its own tmpfs); at heal free it and restart the server
    /// if it died.
    DiskFull,
}

impl NemesisKind {
    /// Every kind with its name, for parsing and printing.
    const NAMES: [(NemesisKind, &'static str); 15] = [
        (NemesisKind::Kill, "kill"),
        (NemesisKind::Pause, "pause"),
        (NemesisKind::Partition, "partition"),
        (NemesisKind::Netem, "netem"),
        (NemesisKind::Member, "member"),
        (NemesisKind::Clock, "clock"),
        (NemesisKind::KillAll, "kill-all"),
        (NemesisKind::KillLeader, "kill-leader"),
        (NemesisKind::KillAgent, "kill-agent"),
        (NemesisKind::PauseAgent, "pause-agent"),
        (NemesisKind::PartitionAgent, "partition-agent"),
        (NemesisKind::PartitionAgentServer, "partition-agent-server"),
        (NemesisKind::KillAgentServer, "kill-agent-server"),
        (NemesisKind::Failpoint, "failpoint"),
        (NemesisKind::DiskFull, "disk-full"),
    ];

    /// Whether the fault needs agents (control-plane workloads only).
    pub fn needs_agents(self) -> bool {
        matches!(
            self,
            NemesisKind::KillAgent
                | NemesisKind::PauseAgent
                | NemesisKind::PartitionAgent
                | NemesisKind::PartitionAgentServer
                | NemesisKind::KillAgentServer
        )
    }
}

impl FromStr for NemesisKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        NemesisKind::NAMES.iter().find(|(_, name)| *name == s).map(|(kind, _)| *kind).ok_or_else(|| {
            let names: Vec<&str> = NemesisKind::NAMES.iter().map(|(_, n)| *n).collect();
            format!("unknown nemesis {other:?} (expected {} or none)", names.join(", "), other = s)
        })
    }
}

impl std::fmt::Display for NemesisKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = NemesisKind::NAMES.iter().find(|(kind, _)| kind == self).map_or("?", |(_, n)| n);
        f.write_str(name)
    }
}

/// `kill,partition`, or `none` for no faults.
pub fn label(kinds: &[NemesisKind]) -> String {
    if kinds.is_empty() {
        "none".into()
    } else {
        kinds.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(",")
    }
}

/// Parses `kill,partition` (or `none`).
pub fn parse_list(s: &str) -> Result<Vec<NemesisKind>, String> {
    if s.trim() == "none" || s.trim().is_empty() {
        return Ok(vec![]);
    }
    s.split(',').map(|p| p.trim().parse()).collect()
}

/// A fault in place, with what its heal must undo.
#[derive(Debug, Clone, PartialEq)]
enum Active {
    Killed(Vec<String>),
    Paused(Vec<String>),
    Partitioned,
    Link(Vec<String>),
    Removed(String),
    Skewed(Vec<String>),
    AgentKilled(String),
    AgentPaused(String),
    /// A failpoint enabled on a node.
    Failpoint {
        node: String,
        point: &'static str,
    },
    /// A node's data disk filled.
    DiskFull(String),
}

#[derive(Debug, Clone)]
pub struct NemesisConfig {
    pub kinds: Vec<NemesisKind>,
    /// Quiet time between faults and how long each fault is held.
    pub interval: Duration,
    pub seed: u64,
}

/// Up to a minority of `names` (at least one), the leader first when `prefer` holds it.
fn pick_minority(rng: &mut StdRng, names: &[String], prefer: Option<&String>) -> Vec<String> {
    let most = (names.len().saturating_sub(1) / 2).max(1);
    let count = rng.random_range(1..=most);
    let mut pool: Vec<String> = names.to_vec();
    pool.shuffle(rng);
    if let Some(leader) = prefer {
        pool.retain(|n| n != leader);
        pool.insert(0, leader.clone());
    }
    pool.truncate(count);
    pool
}

struct Nemesis {
    cluster: Arc<Mutex<DbCluster>>,
    recorder: Arc<Recorder>,
    rng: StdRng,
}

impl Nemesis {
    fn record(&self, kind: OpType, call: Call, error: Option<String>) {
        self.recorder.record(NEMESIS, kind, "", call, error);
    }

    /// Targets: a minority of live nodes, the leader half of the time.
    async fn targets(&mut self, cluster: &mut DbCluster) -> (Vec<String>, Option<String>) {
        let live = cluster.live_names();
        let leader = if self.rng.random_bool(0.5) { cluster.leader().await } else { None };
        let picked = pick_minority(&mut self.rng, &live, leader.as_ref());
        (picked, leader)
    }

    fn describe(targets: &[String], leader: &Option<String>) -> String {
        targets
            .iter()
            .map(|t| if Some(t) == leader.as_ref() { format!("{t} (leader)") } else { t.clone() })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Applies one fault; returns what to heal (None when nothing was applied).
    async fn inject(&mut self, kind: NemesisKind) -> (Result<Option<Active>, HarnessError>, String) {
        let cluster = self.cluster.clone();
        let mut cluster = cluster.lock().await;
        match kind {
            NemesisKind::Kill | NemesisKind::Pause => {
                let (targets, leader) = self.targets(&mut cluster).await;
                let detail = Self::describe(&targets, &leader);
                let applied: Result<(), HarnessError> = targets.iter().try_for_each(|t| match kind {
                    NemesisKind::Kill => cluster.kill(t),
                    _ => cluster.pause(t),
                });
                let active = if kind == NemesisKind::Kill { Active::Killed(targets) } else { Active::Paused(targets) };
                (applied.map(|_| Some(active)), detail)
            }
            NemesisKind::KillAll => {
                let names = cluster.names();
                let applied = names.iter().try_for_each(|t| cluster.kill(t));
                (applied.map(|_| Some(Active::Killed(names.clone()))), names.join(" "))
            }
            NemesisKind::Partition => {
                let kinds = [
                    PartitionKind::IsolateLeader,
                    PartitionKind::RandomHalves,
                    PartitionKind::MajoritiesRing,
                    PartitionKind::Bridge,
                ];
                let pk = *kinds.choose(&mut self.rng).unwrap_or(&PartitionKind::RandomHalves);
                let leader = cluster.leader().await;
                let grudge = partition::grudge(pk, &cluster.names(), leader.as_deref(), &mut self.rng);
                let detail = format!("{pk}: {}", partition::describe(&grudge));
                (cluster.net.apply_grudge(&grudge).map(|_| Some(Active::Partitioned)), detail)
            }
            NemesisKind::KillLeader => match cluster.leader().await {
                Some(leader) => (cluster.kill(&leader).map(|_| Some(Active::Killed(vec![leader.clone()]))), leader),
                None => (Ok(None), "no leader known".into()),
            },
            NemesisKind::KillAgent | NemesisKind::PauseAgent => {
                let Some(agent) = cluster.agent_names().choose(&mut self.rng).cloned() else {
                    return (Ok(None), "no agents (control-plane workloads only)".into());
                };
                if kind == NemesisKind::KillAgent {
                    (cluster.kill_agent(&agent).map(|_| Some(Active::AgentKilled(agent.clone()))), agent)
                } else {
                    (cluster.pause_agent(&agent).map(|_| Some(Active::AgentPaused(agent.clone()))), agent)
                }
            }
            NemesisKind::PartitionAgent | NemesisKind::PartitionAgentServer | NemesisKind::KillAgentServer => {
                let Some(agent) = cluster.agent_names().choose(&mut self.rng).cloned() else {
                    return (Ok(None), "no agents (control-plane workloads only)".into());
                };
                let first = cluster.agent(&agent).and_then(|a| a.servers.first().cloned()).unwrap_or_default();
                match kind {
                    NemesisKind::KillAgentServer => {
                        let detail = format!("{first} (first server of {agent})");
                        (cluster.kill(&first).map(|_| Some(Active::Killed(vec![first.clone()]))), detail)
                    }
                    _ => {
                        let servers =
                            if kind == NemesisKind::PartitionAgent { cluster.names() } else { vec![first.clone()] };
                        let grudge = partition::isolate_from(&agent, &servers);
                        let detail = format!("{agent} cut from {}", servers.join(" "));
                        (cluster.net.apply_grudge(&grudge).map(|_| Some(Active::Partitioned)), detail)
                    }
                }
            }
            NemesisKind::Netem => {
                let (targets, _) = self.targets(&mut cluster).await;
                let fault = LinkFault { delay_ms: 50, jitter_ms: 25, loss_percent: 10.0 };
                let mut details = vec![];
                for t in &targets {
                    match cluster.net.set_link_fault(t, &fault) {
                        Ok(d) => details.push(format!("{t}: {d}")),
                        Err(e) => return (Err(e), details.join("; ")),
                    }
                }
                (Ok(Some(Active::Link(targets))), details.join("; "))
            }
            NemesisKind::Member => {
                if cluster.nodes.iter().any(|n| n.removed) {
                    return (Ok(None), "a member is already removed".into());
                }
                let live = cluster.live_names();
                if live.len() < cluster.nodes.len() {
                    return (Ok(None), "skipped: not every member is up".into());
                }
                let Some(target) = live.choose(&mut self.rng).cloned() else {
                    return (Ok(None), "no live member".into());
                };
                let applied = cluster.remove_member(&target).await;
                (applied.map(|_| Some(Active::Removed(target.clone()))), format!("removed {target}"))
            }
            NemesisKind::Failpoint => {
                let Some(node) = cluster.live_names().choose(&mut self.rng).cloned() else {
                    return (Ok(None), "no live server".into());
                };
                let setting = failpoint::plan(&mut self.rng);
                let detail = format!("{node}: {}={}", setting.point, setting.action);
                let applied = match cluster.api_url(&node) {
                    Ok(url) => failpoint::enable(&url, &setting).await,
                    Err(e) => Err(e),
                };
                (applied.map(|_| Some(Active::Failpoint { node, point: setting.point })), detail)
            }
            NemesisKind::DiskFull => {
                let Some(node) = cluster.live_names().choose(&mut self.rng).cloned() else {
                    return (Ok(None), "no live server".into());
                };
                match cluster.fill_disk(&node) {
                    Ok(bytes) => {
                        let detail = format!("{node}: {} MiB ballast, disk full", bytes >> 20);
                        (Ok(Some(Active::DiskFull(node))), detail)
                    }
                    Err(e) => (Err(e), node),
                }
            }
            NemesisKind::Clock => {
                let (targets, _) = self.targets(&mut cluster).await;
                let mut details = vec![];
                for t in &targets {
                    let offset: f64 = self.rng.random_range(-300.0..300.0_f64).round();
                    if let Err(e) = cluster.set_clock_offset(t, offset) {
                        return (Err(e), details.join(" "));
                    }
                    details.push(format!("{t} {offset:+}s"));
                }
                (Ok(Some(Active::Skewed(targets))), details.join(" "))
            }
        }
    }

    async fn heal(&mut self, active: &Active) -> Result<String, HarnessError> {
        let mut cluster = self.cluster.lock().await;
        Ok(match active {
            Active::Killed(nodes) => {
                for n in nodes {
                    cluster.restart(n)?;
                }
                format!("restarted {}", nodes.join(" "))
            }
            Active::Paused(nodes) => {
                for n in nodes {
                    cluster.resume(n)?;
                }
                format!("resumed {}", nodes.join(" "))
            }
            Active::Partitioned => {
                cluster.net.heal_partition()?;
                "partition healed".into()
            }
            Active::Link(nodes) => {
                for n in nodes {
                    cluster.net.clear_link_fault(n)?;
                }
                format!("links restored on {}", nodes.join(" "))
            }
            Active::Removed(node) => {
                // The cluster may still be electing after the removal; retry for a while.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                loop {
                    match cluster.add_member_back(node).await {
                        Ok(()) => break format!("added {node} back as a new member"),
                        Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                        Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
            }
            Active::Skewed(nodes) => {
                for n in nodes {
                    cluster.set_clock_offset(n, 0.0)?;
                }
                format!("clocks reset on {}", nodes.join(" "))
            }
            Active::AgentKilled(agent) => {
                cluster.heal_agent(agent)?;
                format!("restarted {agent}")
            }
            Active::AgentPaused(agent) => {
                cluster.heal_agent(agent)?;
                format!("resumed {agent}")
            }
            Active::Failpoint { node, point } => {
                // Everywhere, not only on `node`: cheap, and nothing is left on by mistake.
                let mut errors = vec![];
                for name in cluster.live_names() {
                    let removed = match cluster.api_url(&name) {
                        Ok(url) => failpoint::remove(&url, point).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = removed {
                        errors.push(e.to_string());
                    }
                }
                let restarted = restart_dead(&mut cluster)?;
                if !errors.is_empty() {
                    return Err(HarnessError::Rpc(format!("removing {point}: {}", errors.join("; "))));
                }
                format!("{point} removed (was on {node}); {}", restarted_detail(&restarted, node))
            }
            Active::DiskFull(node) => {
                cluster.drain_disk(node)?;
                let restarted = restart_dead(&mut cluster)?;
                // A server that neither exits nor recovers on a full disk is a finding
                // in itself: say whether it answers once the space is back (a restarted
                // one gets a few seconds to boot).
                let until = tokio::time::Instant::now() + Duration::from_secs(5);
                let answers = match cluster.client(node, Duration::from_secs(2)) {
                    Ok(client) => {
                        match crate::workload::retry_until(until, || client.get("jepsen-disk-probe", false)).await {
                            Ok(_) => "answers a linearizable read".to_string(),
                            Err(e) => format!("no linearizable read ({})", e.message),
                        }
                    }
                    Err(e) => format!("no client ({e})"),
                };
                format!("ballast removed from {node}; {}; {node}: {answers}", restarted_detail(&restarted, node))
            }
        })
    }

    /// Heals one fault, recording invoke and outcome.
    async fn heal_recorded(&mut self, name: &str, active: &Active) {
        self.record(OpType::Invoke, Call::Heal { name: name.into(), detail: String::new() }, None);
        match self.heal(active).await {
            Ok(detail) => self.record(OpType::Ok, Call::Heal { name: name.into(), detail }, None),
            Err(e) => {
                self.record(OpType::Fail, Call::Heal { name: name.into(), detail: String::new() }, Some(e.to_string()))
            }
        }
    }

    /// The final heal: everything, whatever the schedule left in place.
    async fn heal_everything(&mut self) {
        self.record(OpType::Invoke, Call::Heal { name: "all".into(), detail: String::new() }, None);
        let mut cluster = self.cluster.lock().await;
        let mut done = vec![];
        let mut errors = vec![];
        if let Err(e) = cluster.net.heal_partition() {
            errors.push(e.to_string());
        }
        for name in cluster.names() {
            if let Err(e) = cluster.net.clear_link_fault(&name) {
                errors.push(e.to_string());
            }
        }
        match cluster.heal_processes() {
            Ok(d) => done.extend(d),
            Err(e) => errors.push(e.to_string()),
        }
        match cluster.heal_agents() {
            Ok(d) => done.extend(d),
            Err(e) => errors.push(e.to_string()),
        }
        let detail = if done.is_empty() { "nothing left to heal".to_string() } else { done.join(", ") };
        let (kind, error) =
            if errors.is_empty() { (OpType::Ok, None) } else { (OpType::Fail, Some(errors.join("; "))) };
        self.record(kind, Call::Heal { name: "all".into(), detail }, error);
    }
}

/// Restarts every member that is down (not removed), saying how each had ended: a crash at
/// a failpoint (SIGABRT) and a server giving up on a full disk look different here.
fn restart_dead(cluster: &mut DbCluster) -> Result<Vec<String>, HarnessError> {
    let mut restarted = vec![];
    for i in 0..cluster.nodes.len() {
        let node = &mut cluster.nodes[i];
        if node.removed || node.member.is_running() {
            continue;
        }
        let status = node.member.exit_status().map_or("unknown".to_string(), |s| s.to_string());
        let name = node.name.clone();
        cluster.restart(&name)?;
        restarted.push(format!("{name} ({status})"));
    }
    Ok(restarted)
}

fn restarted_detail(restarted: &[String], target: &str) -> String {
    if restarted.is_empty() {
        format!("{target} had not exited")
    } else {
        format!("restarted {}", restarted.join(", "))
    }
}

/// The next fault kind: drawn from a shuffled bag of all `kinds`, refilled when empty, so a
/// short run with few faults still gets every kind it asked for (an independent draw per
/// fault may pick the same one every time).
fn next_kind(bag: &mut Vec<NemesisKind>, kinds: &[NemesisKind], rng: &mut StdRng) -> Option<NemesisKind> {
    if bag.is_empty() {
        bag.extend_from_slice(kinds);
        bag.shuffle(rng);
    }
    bag.pop()
}

/// Runs the fault schedule until `stop`, then heals everything (removed members included).
pub async fn run(cluster: Arc<Mutex<DbCluster>>, recorder: Arc<Recorder>, cfg: NemesisConfig, stop: CancellationToken) {
    let mut nemesis = Nemesis { cluster, recorder, rng: StdRng::seed_from_u64(cfg.seed ^ 0x6e656d65) };
    let mut bag = vec![];
    if !cfg.kinds.is_empty() {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(cfg.interval) => {}
                _ = stop.cancelled() => break,
            }
            let Some(kind) = next_kind(&mut bag, &cfg.kinds, &mut nemesis.rng) else { break };
            let name = kind.to_string();
            nemesis.record(OpType::Invoke, Call::Fault { name: name.clone(), detail: String::new() }, None);
            let (outcome, detail) = nemesis.inject(kind).await;
            let active = match outcome {
                Ok(Some(active)) => {
                    nemesis.record(OpType::Ok, Call::Fault { name: name.clone(), detail }, None);
                    active
                }
                Ok(None) => {
                    nemesis.record(
                        OpType::Fail,
                        Call::Fault { name: name.clone(), detail: detail.clone() },
                        Some(detail),
                    );
                    continue;
                }
                Err(e) => {
                    nemesis.record(OpType::Fail, Call::Fault { name: name.clone(), detail }, Some(e.to_string()));
                    continue;
                }
            };
            let stopped = tokio::select! {
                _ = tokio::time::sleep(cfg.interval) => false,
                _ = stop.cancelled() => true,
            };
            nemesis.heal_recorded(&name, &active).await;
            if stopped {
                break;
            }
        }
    }
    nemesis.heal_everything().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nemesis_lists_parse_and_reject_unknown_names() {
        assert_eq!(parse_list("kill,partition").unwrap(), vec![NemesisKind::Kill, NemesisKind::Partition]);
        assert!(parse_list("none").unwrap().is_empty());
        assert!(parse_list("kill,explode").unwrap_err().contains("explode"));
        let agents = "kill-leader,kill-agent,pause-agent,partition-agent,partition-agent-server,kill-agent-server";
        let kinds = parse_list(agents).unwrap();
        assert_eq!(label(&kinds), agents);
        assert_eq!(kinds.iter().filter(|k| k.needs_agents()).count(), 5);
    }

    #[test]
    fn every_kind_comes_once_before_any_comes_again() {
        let kinds = parse_list("kill-leader,partition-agent,kill").unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let mut bag = vec![];
        for _ in 0..3 {
            let mut round: Vec<NemesisKind> = (0..3).filter_map(|_| next_kind(&mut bag, &kinds, &mut rng)).collect();
            round.sort_by_key(|k| k.to_string());
            assert_eq!(label(&round), "kill,kill-leader,partition-agent");
        }
        assert_eq!(next_kind(&mut vec![], &[], &mut rng), None);
    }

    #[test]
    fn targets_are_a_minority_and_prefer_the_leader() {
        let names: Vec<String> = (1..=5).map(|i| format!("n{i}")).collect();
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..100 {
            let picked = pick_minority(&mut rng, &names, Some(&"n4".to_string()));
            assert!((1..=2).contains(&picked.len()));
            assert_eq!(picked[0], "n4");
        }
        let three = &names[..3];
        assert_eq!(pick_minority(&mut rng, three, None).len(), 1);
    }
}
