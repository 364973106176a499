//! The test network: one Linux network namespace per node, all plugged into a private
//! bridge, plus the kernel knobs the nemesis turns — iptables rules for partitions,
//! `tc` qdiscs and iptables `statistic` rules for slow or lossy links.
//!
//! Layout (everything is created with `ip`, and every name carries the owner's PID so
//! [`sweep_stale`] can tell leftovers of dead harness processes from live networks):
//!
//! ```text
//!   host namespace                switch namespace bj<tag>              node namespaces
//!   bj<tag>h 10.S.T.1/24  ──veth── uplink ┐
//!                                          bjbr<tag> (bridge) ── bj<tag>v0 ──veth── eth0 10.S.T.11  (bj<tag>-n1)
//!                                                     ├───────── bj<tag>v1 ──veth── eth0 10.S.T.12  (bj<tag>-n2)
//!                                                     └───────── …
//! ```
//!
//! `<tag>` is the harness PID, with `x<k>` appended for the second and later networks of
//! the same process. The bridge lives in a namespace of its own rather than in the host's
//! because with `br_netfilter` loaded (Docker loads it, and sets the host's FORWARD policy to
//! DROP) bridged traffic would pass through the host's firewall, which we must neither
//! depend on nor change. The only thing the host namespace gets is one veth end with the
//! address the harness's clients connect from ([`Network::host_ip`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::partition::Grudge;
use crate::HarnessError;

/// `ip` and `tc` normally answer in milliseconds; the bound only matters if something hangs.
const IP_TIMEOUT: Duration = Duration::from_secs(10);
/// iptables may wait (`-w`) for the xtables lock, which all namespaces share.
const IPTABLES_TIMEOUT: Duration = Duration::from_secs(20);
const PARTITION_CHAIN: &str = "BERTH-PARTITION";
const LINK_CHAIN: &str = "BERTH-LINK";
/// Linux interface names hold at most 15 bytes (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;
/// Where `ip netns` keeps its named namespaces.
const NETNS_DIR: &str = "/var/run/netns";
/// Host part of the first node's address; `.1` is the host, the rest is spare.
const FIRST_NODE_HOST: u8 = 11;
/// The node's interface inside its namespace.
const NODE_IF: &str = "eth0";
/// The switch namespace's end of the host's veth.
const SWITCH_UPLINK: &str = "uplink";

/// Fails with a clear message unless we run as root: namespaces, iptables and tc need it.
pub fn require_root() -> Result<(), HarnessError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        Ok(())
    } else {
        Err(HarnessError::NotRoot)
    }
}

/// Runs `cmd args…`, waiting at most `timeout` (then kills it by PID), and returns its
/// stdout. A failure names the command line and carries its stderr.
pub fn run(cmd: &str, args: &[impl AsRef<str>], timeout: Duration) -> Result<String, HarnessError> {
    run_with_input(cmd, args, None, timeout)
}

fn run_with_input(
    cmd: &str,
    args: &[impl AsRef<str>],
    input: Option<&str>,
    timeout: Duration,
) -> Result<String, HarnessError> {
    let line = command_line(cmd, args);
    let fail = |message: String| HarnessError::Command { command: line.clone(), message };
    tracing::debug!(command = %line, "run");
    let mut child = Command::new(cmd)
        .args(args.iter().map(AsRef::as_ref))
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("could not start: {e}")))?;
    // Pipes are written and drained on their own threads so a chatty child can never block
    // on a full pipe while we wait for it to exit.
    if let (Some(mut stdin), Some(text)) = (child.stdin.take(), input) {
        let text = text.to_owned();
        thread::spawn(move || {
            // A child that exits without reading its input reports that itself.
            let _ = stdin.write_all(text.as_bytes());
        });
    }
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        drain(out, 0, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        drain(err, 1, tx);
    }
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let pid = child.id();
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("timed out after {timeout:?}; killed pid {pid}")));
            }
            Ok(None) => {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("waiting for it: {e}")));
            }
        }
    };
    // A grandchild that inherited the pipes could keep them open after the child exited;
    // give the readers a bounded moment and report what arrived.
    let mut texts = [String::new(), String::new()];
    let collect_until = Instant::now() + Duration::from_secs(2);
    for _ in 0..2 {
        match rx.recv_timeout(collect_until.saturating_duration_since(Instant::now())) {
            Ok((i, text)) => texts[i] = text,
            Err(_) => break,
        }
    }
    let [stdout, stderr] = texts;
    if status.success() {
        Ok(stdout)
    } else {
        let mut message = format!("{status}: {}", stderr.trim());
        if let Some(text) = input {
            message.push_str(&format!("\ninput was:\n{text}"));
        }
        Err(fail(message))
    }
}

fn drain(mut pipe: impl Read + Send + 'static, index: usize, tx: mpsc::Sender<(usize, String)>) {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = tx.send((index, String::from_utf8_lossy(&bytes).into_owned()));
    });
}

fn command_line(cmd: &str, args: &[impl AsRef<str>]) -> String {
    let mut line = cmd.to_string();
    for arg in args {
        let arg = arg.as_ref();
        line.push(' ');
        if arg.is_empty() || arg.contains(char::is_whitespace) {
            line.push_str(&format!("'{arg}'"));
        } else {
            line.push_str(arg);
        }
    }
    line
}

/// One node's place on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNet {
    /// The node (member) name.
    pub name: String,
    /// Its network namespace (`ip netns` name).
    pub netns: String,
    /// Its address on `eth0` inside that namespace.
    pub ip: Ipv4Addr,
}

/// A slow or lossy link for one node. All zero means no fault.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LinkFault {
    pub delay_ms: u32,
    pub jitter_ms: u32,
    /// Percent of packets dropped, 0–100.
    pub loss_percent: f32,
}

/// Numbers the networks of one process, so each gets its own names.
static INSTANCES: AtomicU32 = AtomicU32::new(0);

fn next_tag() -> String {
    let pid = std::process::id();
    match INSTANCES.fetch_add(1, Ordering::Relaxed) {
        0 => pid.to_string(),
        k => format!("{pid}x{k}"),
    }
}

/// The private network of one test run. Dropping it removes everything it created.
#[derive(Debug)]
pub struct Network {
    tag: String,
    /// Only the process that built the network tears it down (a forked child that happens
    /// to drop a copy of the struct must not).
    owner_pid: u32,
    switch_ns: String,
    bridge: String,
    uplink: String,
    /// The /24 as its first three octets.
    subnet: [u8; 3],
    host_ip: Ipv4Addr,
    nodes: Vec<NodeNet>,
    destroyed: bool,
}

impl Network {
    /// A bridge (in its own namespace), one namespace per node with `eth0` and `lo` up, and
    /// the host's address on the bridge. If any step fails, what was made is removed again.
    pub fn create(node_names: &[String]) -> Result<Network, HarnessError> {
        require_root()?;
        let mut seen = BTreeSet::new();
        for name in node_names {
            check_node_name(name)?;
            if !seen.insert(name) {
                return Err(HarnessError::Net(format!("node {name:?} listed twice")));
            }
        }
        let tag = next_tag();
        let mut net = Network {
            switch_ns: format!("bj{tag}"),
            bridge: format!("bjbr{tag}"),
            uplink: format!("bj{tag}h"),
            tag,
            owner_pid: std::process::id(),
            subnet: [0; 3],
            host_ip: Ipv4Addr::UNSPECIFIED,
            nodes: Vec::new(),
            destroyed: false,
        };
        check_ifname(&net.bridge)?;
        check_ifname(&net.uplink)?;
        // Names with our tag that exist before we made them belong to an earlier process that
        // had our PID and died without cleaning up (PIDs get reused).
        if link_exists(&net.uplink) {
            tracing::warn!(link = %net.uplink, "removing a leftover of an earlier process with our PID");
            run("ip", &["link", "del", "dev", &net.uplink], IP_TIMEOUT)?;
        }
        remove_leftover_netns(&net.switch_ns)?;
        // From here on an early return drops `net`, whose Drop removes what exists so far.
        net.build_switch()?;
        for name in node_names {
            net.add_node(name)?;
        }
        tracing::info!(bridge = %net.bridge, host_ip = %net.host_ip, nodes = net.nodes.len(), "network created");
        Ok(net)
    }

    pub fn nodes(&self) -> &[NodeNet] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeNet> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The host's address on the bridge: the harness's clients reach the nodes from here,
    /// and partitions and link faults never block it.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// Prefix for a program that must run inside `node`'s namespace. `ip netns exec` execs
    /// the program, so the spawned PID is the program's own. (For a name that is not a node
    /// the command fails at start: the namespace does not exist.)
    pub fn exec_prefix(&self, node: &str) -> Vec<String> {
        ["ip", "netns", "exec"].into_iter().map(String::from).chain([self.netns_of(node)]).collect()
    }

    /// A new node on the network (for the membership nemesis), with the next free address.
    pub fn add_node(&mut self, name: &str) -> Result<&NodeNet, HarnessError> {
        self.check_live()?;
        check_node_name(name)?;
        if self.node(name).is_some() {
            return Err(HarnessError::Net(format!("node {name:?} already exists")));
        }
        let index = self.nodes.len();
        let host = u8::try_from(usize::from(FIRST_NODE_HOST) + index)
            .ok()
            .filter(|h| *h < 255)
            .ok_or_else(|| HarnessError::Net(format!("no address left for node {name:?} ({index} nodes exist)")))?;
        let [a, b, c] = self.subnet;
        let node = NodeNet { name: name.to_string(), netns: self.netns_of(name), ip: Ipv4Addr::new(a, b, c, host) };
        let port = format!("bj{}v{index}", self.tag);
        check_ifname(&port)?;
        remove_leftover_netns(&node.netns)?;
        if let Err(e) = self.build_node(&node, &port) {
            // Deleting the namespace takes its end of the veth pair, and with it ours.
            let _ = run("ip", &["netns", "del", &node.netns], IP_TIMEOUT);
            let _ = run("ip", &["-n", &self.switch_ns, "link", "del", "dev", &port], IP_TIMEOUT);
            return Err(e);
        }
        self.nodes.push(node);
        Ok(&self.nodes[index])
    }

    /// Makes the kernel enforce `grudge`: each node DROPs packets from and to the nodes it
    /// holds a grudge against (and those holding one against it), in its own namespace. The
    /// host address is never blocked. Replaces the previous partition.
    pub fn apply_grudge(&self, grudge: &Grudge) -> Result<(), HarnessError> {
        self.check_live()?;
        let mut blocked: BTreeMap<&str, BTreeSet<Ipv4Addr>> = BTreeMap::new();
        for (node, enemies) in grudge {
            let ip = self.ip_of(node)?;
            for enemy in enemies {
                let enemy_ip = self.ip_of(enemy)?;
                // Both directions, so a one-sided grudge still cuts the link for TCP.
                blocked.entry(node).or_default().insert(enemy_ip);
                blocked.entry(enemy).or_default().insert(ip);
            }
        }
        let empty = BTreeSet::new();
        for node in &self.nodes {
            let ips = blocked.get(node.name.as_str()).unwrap_or(&empty);
            let mut rules = String::new();
            for ip in ips.iter().filter(|ip| **ip != self.host_ip) {
                rules.push_str(&format!(
                    "-A {PARTITION_CHAIN} -s {ip}/32 -j DROP\n-A {PARTITION_CHAIN} -d {ip}/32 -j DROP\n"
                ));
            }
            self.replace_chain(node, PARTITION_CHAIN, &rules)?;
        }
        Ok(())
    }

    /// Removes every partition rule: all nodes see each other again.
    pub fn heal_partition(&self) -> Result<(), HarnessError> {
        self.check_live()?;
        for node in &self.nodes {
            self.replace_chain(node, PARTITION_CHAIN, "")?;
        }
        Ok(())
    }

    /// Slows or drops `node`'s traffic, replacing its previous link fault, and says what was
    /// actually applied — which differs from what was asked when the kernel lacks netem.
    pub fn set_link_fault(&self, node: &str, fault: &LinkFault) -> Result<String, HarnessError> {
        self.check_live()?;
        let target = self.node_ref(node)?;
        if !(0.0..=100.0).contains(&fault.loss_percent) {
            return Err(HarnessError::Net(format!("loss {}% is not a percentage", fault.loss_percent)));
        }
        self.clear_link_fault(node)?;
        let plan = plan_link_fault(node, fault, Self::netem_available(), self.host_ip);
        if let Some(qdisc) = &plan.qdisc {
            let mut args: Vec<String> = ["-n", &target.netns, "qdisc", "replace", "dev", NODE_IF, "root"]
                .into_iter()
                .map(String::from)
                .collect();
            args.extend(qdisc.iter().cloned());
            run("tc", &args, IP_TIMEOUT)?;
        }
        if !plan.link_rules.is_empty() {
            self.replace_chain(target, LINK_CHAIN, &plan.link_rules)?;
        }
        tracing::info!(node, fault = %plan.description, "link fault set");
        Ok(plan.description)
    }

    /// Removes `node`'s link fault (qdisc and loss rules), if any.
    pub fn clear_link_fault(&self, node: &str) -> Result<(), HarnessError> {
        self.check_live()?;
        let target = self.node_ref(node)?;
        let qdiscs = run("tc", &["-n", &target.netns, "qdisc", "show", "dev", NODE_IF, "root"], IP_TIMEOUT)?;
        // A veth without a fault has the default `noqueue` root, which cannot be deleted.
        if qdiscs.contains("netem") || qdiscs.contains("tbf") {
            run("tc", &["-n", &target.netns, "qdisc", "del", "dev", NODE_IF, "root"], IP_TIMEOUT)?;
        }
        self.replace_chain(target, LINK_CHAIN, "")
    }

    /// Whether the kernel has the `netem` qdisc. Probed once per process, by adding one to
    /// the loopback device of a throwaway namespace.
    pub fn netem_available() -> bool {
        static NETEM: OnceLock<bool> = OnceLock::new();
        *NETEM.get_or_init(|| {
            if require_root().is_err() {
                return false;
            }
            let ns = format!("bj{}", next_tag());
            if let Err(e) = run("ip", &["netns", "add", &ns], IP_TIMEOUT) {
                tracing::warn!(error = %e, "cannot probe for netem; assuming it is missing");
                return false;
            }
            let probe =
                run("tc", &["-n", &ns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"], IP_TIMEOUT);
            if let Err(e) = run("ip", &["netns", "del", &ns], IP_TIMEOUT) {
                tracing::warn!(error = %e, "removing the netem probe namespace");
            }
            match probe {
                Ok(_) => true,
                Err(e) => {
                    tracing::info!(error = %e, "no netem: link delay falls back to tbf, loss to iptables statistic");
                    false
                }
            }
        })
    }

    /// Removes the namespaces (and with them every rule, qdisc and veth inside), the bridge
    /// and the host's veth. Idempotent; also run on drop; logs instead of failing.
    pub fn destroy(&mut self) {
        if self.destroyed || std::process::id() != self.owner_pid {
            return;
        }
        self.destroyed = true;
        // The host's veth first: deleting a link is synchronous, while a deleted namespace's
        // devices disappear asynchronously (or not at all while a process still lives in it).
        if link_exists(&self.uplink) {
            warn_on_error(run("ip", &["link", "del", "dev", &self.uplink], IP_TIMEOUT));
        }
        for node in &self.nodes {
            kill_processes_in(&node.netns);
            delete_netns(&node.netns);
        }
        // Deleting the switch namespace takes the bridge and the nodes' veth peers with it, so
        // a node whose namespace lingers (a process still inside) is cut off all the same.
        delete_netns(&self.switch_ns);
        tracing::info!(bridge = %self.bridge, "network destroyed");
    }

    fn build_switch(&mut self) -> Result<(), HarnessError> {
        let sw = self.switch_ns.clone();
        run("ip", &["netns", "add", &sw], IP_TIMEOUT)?;
        run("ip", &["-n", &sw, "link", "add", &self.bridge, "type", "bridge"], IP_TIMEOUT)?;
        run("ip", &["-n", &sw, "link", "set", "dev", &self.bridge, "up"], IP_TIMEOUT)?;
        run(
            "ip",
            &["link", "add", &self.uplink, "type", "veth", "peer", "name", SWITCH_UPLINK, "netns", &sw],
            IP_TIMEOUT,
        )?;
        run("ip", &["-n", &sw, "link", "set", "dev", SWITCH_UPLINK, "master", &self.bridge, "up"], IP_TIMEOUT)?;
        run("ip", &["link", "set", "dev", &self.uplink, "up"], IP_TIMEOUT)?;
        self.assign_subnet()
    }

    /// Picks a /24 in 10.200.0.0–10.254.255.0 that no host address or route overlaps, and puts
    /// the host's address (.1) on the uplink.
    fn assign_subnet(&mut self) -> Result<(), HarnessError> {
        const CANDIDATES: usize = 55 * 256;
        const TRIES: usize = 64;
        // Start somewhere that depends on the tag so concurrent harnesses rarely pick alike.
        let start = self.tag.bytes().fold(0usize, |h, b| h.wrapping_mul(131).wrapping_add(usize::from(b))) % CANDIDATES;
        for attempt in 0..TRIES {
            let index = (start + attempt * 257) % CANDIDATES;
            let subnet = [10, 200 + (index / 256) as u8, (index % 256) as u8];
            let net = Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 0);
            if host_prefixes()?.iter().any(|(_, addr, len)| overlaps(*addr, *len, net, 24)) {
                continue;
            }
            let host_ip = Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 1);
            let cidr = format!("{host_ip}/24");
            run("ip", &["addr", "add", &cidr, "dev", &self.uplink], IP_TIMEOUT)?;
            // Another harness may have taken the same /24 between our look and our add. The
            // interface with the greater name yields, so exactly one of two clashing networks
            // moves on.
            let clash = host_addresses()?.iter().any(|(ifname, addr, _)| {
                *ifname != self.uplink && overlaps(*addr, 24, net, 24) && *ifname < self.uplink
            });
            if clash {
                run("ip", &["addr", "del", &cidr, "dev", &self.uplink], IP_TIMEOUT)?;
                continue;
            }
            self.subnet = subnet;
            self.host_ip = host_ip;
            return Ok(());
        }
        Err(HarnessError::Net(format!("no free /24 in 10.200.0.0/16–10.254.0.0/16 after {TRIES} tries")))
    }

    fn build_node(&self, node: &NodeNet, port: &str) -> Result<(), HarnessError> {
        let ns = node.netns.as_str();
        run("ip", &["netns", "add", ns], IP_TIMEOUT)?;
        run("ip", &["-n", ns, "link", "set", "dev", "lo", "up"], IP_TIMEOUT)?;
        run(
            "ip",
            &["-n", &self.switch_ns, "link", "add", port, "type", "veth", "peer", "name", NODE_IF, "netns", ns],
            IP_TIMEOUT,
        )?;
        run("ip", &["-n", &self.switch_ns, "link", "set", "dev", port, "master", &self.bridge, "up"], IP_TIMEOUT)?;
        run("ip", &["-n", ns, "addr", "add", &format!("{}/24", node.ip), "dev", NODE_IF], IP_TIMEOUT)?;
        run("ip", &["-n", ns, "link", "set", "dev", NODE_IF, "up"], IP_TIMEOUT)?;
        // The node's own chains, empty until a fault fills them. Loopback skips the link chain
        // so a node talking to itself is never slowed or dropped.
        let script = format!(
            "*filter\n:{PARTITION_CHAIN} - [0:0]\n:{LINK_CHAIN} - [0:0]\n\
             -A INPUT -j {PARTITION_CHAIN}\n-A OUTPUT -j {PARTITION_CHAIN}\n\
             -A INPUT ! -i lo -j {LINK_CHAIN}\n-A OUTPUT ! -o lo -j {LINK_CHAIN}\nCOMMIT\n"
        );
        run_with_input("ip", &["netns", "exec", ns, "iptables-restore", "-w", "10"], Some(&script), IPTABLES_TIMEOUT)?;
        Ok(())
    }

    /// Replaces the rules of one of the node's chains in one atomic `iptables-restore`: with
    /// `--noflush`, declaring the chain empties it and leaves the rest of the table alone.
    fn replace_chain(&self, node: &NodeNet, chain: &str, rules: &str) -> Result<(), HarnessError> {
        let script = format!("*filter\n:{chain} - [0:0]\n{rules}COMMIT\n");
        run_with_input(
            "ip",
            &["netns", "exec", &node.netns, "iptables-restore", "--noflush", "-w", "10"],
            Some(&script),
            IPTABLES_TIMEOUT,
        )
        .map(drop)
    }

    fn netns_of(&self, node: &str) -> String {
        format!("bj{}-{node}", self.tag)
    }

    fn node_ref(&self, name: &str) -> Result<&NodeNet, HarnessError> {
        self.node(name).ok_or_else(|| HarnessError::Net(format!("no node {name:?} on this network")))
    }

    fn ip_of(&self, name: &str) -> Result<Ipv4Addr, HarnessError> {
        self.node_ref(name).map(|n| n.ip)
    }

    fn check_live(&self) -> Result<(), HarnessError> {
        if self.destroyed {
            Err(HarnessError::Net("the network was destroyed".into()))
        } else {
            Ok(())
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// What [`Network::set_link_fault`] will do for a fault, worked out without touching the
/// system so it can be tested anywhere.
#[derive(Debug, PartialEq)]
struct LinkPlan {
    /// The root qdisc for the node's `eth0` (`tc qdisc replace … root <these>`).
    qdisc: Option<Vec<String>>,
    /// Rules for the node's link chain (empty: none).
    link_rules: String,
    description: String,
}

fn plan_link_fault(node: &str, fault: &LinkFault, netem: bool, host_ip: Ipv4Addr) -> LinkPlan {
    let LinkFault { delay_ms, jitter_ms, loss_percent } = *fault;
    let loss = loss_percent > 0.0;
    if delay_ms == 0 && jitter_ms == 0 && !loss {
        return LinkPlan { qdisc: None, link_rules: String::new(), description: format!("no link fault on {node}") };
    }
    if netem {
        let mut qdisc = vec!["netem".to_string()];
        let mut said = Vec::new();
        if delay_ms > 0 || jitter_ms > 0 {
            qdisc.extend(["delay".into(), format!("{delay_ms}ms")]);
            if jitter_ms > 0 {
                qdisc.push(format!("{jitter_ms}ms"));
                said.push(format!("delay {delay_ms}ms ±{jitter_ms}ms"));
            } else {
                said.push(format!("delay {delay_ms}ms"));
            }
        }
        if loss {
            qdisc.extend(["loss".into(), format!("{loss_percent}%")]);
            said.push(format!("loss {loss_percent}%"));
        }
        let description =
            format!("{} via netem on {node}'s eth0 (egress, all its traffic including clients)", said.join(", "));
        return LinkPlan { qdisc: Some(qdisc), link_rules: String::new(), description };
    }
    let mut said = Vec::new();
    let mut link_rules = String::new();
    if loss {
        let probability = f64::from(loss_percent) / 100.0;
        link_rules = format!(
            "-A {LINK_CHAIN} -s {host_ip}/32 -j RETURN\n-A {LINK_CHAIN} -d {host_ip}/32 -j RETURN\n\
             -A {LINK_CHAIN} -m statistic --mode random --probability {probability:.6} -j DROP\n"
        );
        said.push(format!(
            "loss {loss_percent}% in each direction via iptables statistic on {node} (peer traffic only; clients exempt)"
        ));
    }
    let mut qdisc = None;
    if delay_ms > 0 {
        // tbf cannot hold packets for a fixed time; it can only pace them. A rate at which
        // one full-size packet takes `delay_ms` to send is the nearest substitute: full
        // packets wait about that long, small ones less, bursts queue up behind each other.
        let rate_bit = (12_000_000 / u64::from(delay_ms)).max(8_000);
        qdisc = Some(
            ["tbf", "rate", &format!("{rate_bit}bit"), "burst", "1600", "latency", "5000ms"]
                .into_iter()
                .map(String::from)
                .collect(),
        );
        said.push(format!(
            "delay {delay_ms}ms unavailable: kernel lacks sch_netem, applied tbf rate {rate_bit}bit burst 1600b \
             on {node}'s eth0 egress instead (≈{delay_ms}ms per 1500-byte packet, less for small packets; \
             affects clients too)"
        ));
    }
    if jitter_ms > 0 {
        said.push(format!("jitter {jitter_ms}ms not applied: kernel lacks sch_netem"));
    }
    LinkPlan { qdisc, link_rules, description: said.join("; ") }
}

/// Removes network namespaces and host links left behind by harness processes that no
/// longer run (their names carry the owner's PID), and returns what it removed. Processes
/// still inside such a namespace are left alone — they just lose their network.
pub fn sweep_stale() -> Vec<String> {
    if require_root().is_err() {
        return Vec::new();
    }
    let mut removed = Vec::new();
    let links = match run("ip", &["-j", "link", "show"], IP_TIMEOUT) {
        Ok(json) => ifnames(&json),
        Err(e) => {
            tracing::warn!(error = %e, "listing links for the sweep");
            Vec::new()
        }
    };
    for link in links {
        if owner_pid(&link).is_some_and(|pid| !pid_alive(pid))
            && run("ip", &["link", "del", "dev", &link], IP_TIMEOUT).is_ok()
        {
            removed.push(format!("link {link}"));
        }
    }
    let mut namespaces: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .map(|dir| dir.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    namespaces.sort();
    for ns in namespaces {
        if owner_pid(&ns).is_some_and(|pid| !pid_alive(pid)) && run("ip", &["netns", "del", &ns], IP_TIMEOUT).is_ok() {
            removed.push(format!("netns {ns}"));
        }
    }
    if !removed.is_empty() {
        tracing::info!(?removed, "swept stale test networks");
    }
    removed
}

/// The PID in one of our names: `bj<pid>` (switch namespace), `bj<pid>-<node>` (node
/// namespace), `bj<pid>h` (host veth), `bjbr<pid>` (bridge), `bj<pid>v<i>` / `bj<pid>p<i>`
/// (veths), each optionally with `x<k>` after the PID. Anything else is not ours.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("bj")?;
    let rest = rest.strip_prefix("br").unwrap_or(rest);
    let (pid, mut tail) = split_digits(rest)?;
    if let Some(after_x) = tail.strip_prefix('x') {
        tail = split_digits(after_x)?.1;
    }
    let veth = |prefix: char| {
        tail.strip_prefix(prefix).is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
    };
    let ours = tail.is_empty() || tail == "h" || tail.len() > 1 && tail.starts_with('-') || veth('v') || veth('p');
    pid.parse().ok().filter(|pid| *pid > 0 && ours)
}

/// Leading ASCII digits (at least one) and the rest.
fn split_digits(s: &str) -> Option<(&str, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    (end > 0).then(|| s.split_at(end))
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn link_exists(name: &str) -> bool {
    run("ip", &["link", "show", "dev", name], IP_TIMEOUT).is_ok()
}

/// SIGKILLs every process left in namespace `name` — ours by construction: only the
/// harness's members and what they started (process-runtime containers, which outlive
/// their agent) live in it.
fn kill_processes_in(name: &str) {
    if !Path::new(NETNS_DIR).join(name).exists() {
        return;
    }
    match run("ip", &["netns", "pids", name], IP_TIMEOUT) {
        Ok(out) => {
            for pid in out.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                // SAFETY: kill(2) with a pid read just now; no memory is involved.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        Err(e) => tracing::warn!(netns = name, error = %e, "listing the namespace's processes"),
    }
}

fn delete_netns(name: &str) {
    if Path::new(NETNS_DIR).join(name).exists() {
        warn_on_error(run("ip", &["netns", "del", name], IP_TIMEOUT));
    }
}

/// Removes namespace `name` if it exists — only for names carrying our own tag, which no
/// one else can have made (see [`Network::create`]).
fn remove_leftover_netns(name: &str) -> Result<(), HarnessError> {
    if Path::new(NETNS_DIR).join(name).exists() {
        tracing::warn!(netns = name, "removing a leftover of an earlier process with our PID");
        run("ip", &["netns", "del", name], IP_TIMEOUT)?;
    }
    Ok(())
}

fn warn_on_error(result: Result<String, HarnessError>) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "tearing down the test network");
    }
}

fn check_node_name(name: &str) -> Result<(), HarnessError> {
    let ok =
        !name.is_empty() && name.len() <= 32 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(HarnessError::Net(format!("node name {name:?} must be 1–32 characters of [A-Za-z0-9_-]")))
    }
}

fn check_ifname(name: &str) -> Result<(), HarnessError> {
    if name.len() <= MAX_IFNAME {
        Ok(())
    } else {
        Err(HarnessError::Net(format!("interface name {name:?} is longer than {MAX_IFNAME} bytes")))
    }
}

/// Whether two IPv4 prefixes share any address.
fn overlaps(a: Ipv4Addr, a_len: u8, b: Ipv4Addr, b_len: u8) -> bool {
    let len = u32::from(a_len.min(b_len).min(32));
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(a) & mask == u32::from(b) & mask
}

/// Every IPv4 address on the host, as (interface, address, prefix length).
fn host_addresses() -> Result<Vec<(String, Ipv4Addr, u8)>, HarnessError> {
    let json = run("ip", &["-j", "-4", "addr", "show"], IP_TIMEOUT)?;
    let links: Vec<serde_json::Value> = parse_json(&json, "ip -j -4 addr show")?;
    let mut out = Vec::new();
    for link in &links {
        let ifname = link["ifname"].as_str().unwrap_or_default();
        for info in link["addr_info"].as_array().into_iter().flatten() {
            let addr = info["local"].as_str().and_then(|a| a.parse().ok());
            let len = info["prefixlen"].as_u64().and_then(|l| u8::try_from(l).ok());
            if let (Some(addr), Some(len)) = (addr, len) {
                out.push((ifname.to_string(), addr, len));
            }
        }
    }
    Ok(out)
}

/// Every IPv4 prefix the host already uses: its addresses' networks and the destinations of
/// its routes in all tables (except default routes, which overlap everything).
fn host_prefixes() -> Result<Vec<(String, Ipv4Addr, u8)>, HarnessError> {
    let mut out = host_addresses()?;
    let json = run("ip", &["-j", "-4", "route", "show", "table", "all"], IP_TIMEOUT)?;
    let routes: Vec<serde_json::Value> = parse_json(&json, "ip -j -4 route show table all")?;
    for route in &routes {
        let dst = route["dst"].as_str().unwrap_or("default");
        let (addr, len) = dst.split_once('/').unwrap_or((dst, "32"));
        if let (Ok(addr), Ok(len)) = (addr.parse::<Ipv4Addr>(), len.parse::<u8>()) {
            out.push((route["dev"].as_str().unwrap_or_default().to_string(), addr, len));
        }
    }
    Ok(out)
}

fn parse_json(json: &str, what: &str) -> Result<Vec<serde_json::Value>, HarnessError> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(json)
        .map_err(|e| HarnessError::Command { command: what.to_string(), message: format!("unexpected output: {e}") })
}

fn ifnames(json: &str) -> Vec<String> {
    parse_json(json, "ip -j link show")
        .unwrap_or_default()
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(String::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pids_are_read_from_our_names_only() {
        assert_eq!(owner_pid("bj1234"), Some(1234));
        assert_eq!(owner_pid("bj1234x2"), Some(1234));
        assert_eq!(owner_pid("bj1234-n1"), Some(1234));
        assert_eq!(owner_pid("bj1234x2-node-3"), Some(1234));
        assert_eq!(owner_pid("bj1234h"), Some(1234));
        assert_eq!(owner_pid("bj1234x10h"), Some(1234));
        assert_eq!(owner_pid("bjbr1234"), Some(1234));
        assert_eq!(owner_pid("bjbr1234x3"), Some(1234));
        assert_eq!(owner_pid("bj1234v0"), Some(1234));
        assert_eq!(owner_pid("bj1234x1v12"), Some(1234));
        assert_eq!(owner_pid("bj1234p3"), Some(1234));
        for other in
            ["eth0", "bj", "bjx", "bj-n1", "bj0", "bj12a", "bj12-", "bj12v", "bj12x", "bj12hh", "bjbr", "docker0"]
        {
            assert_eq!(owner_pid(other), None, "{other}");
        }
    }

    #[test]
    fn prefixes_overlap() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert!(overlaps(ip("10.200.3.0"), 24, ip("10.200.3.1"), 24));
        assert!(overlaps(ip("10.0.0.0"), 8, ip("10.200.3.0"), 24));
        assert!(overlaps(ip("10.200.3.7"), 32, ip("10.200.3.0"), 24));
        assert!(!overlaps(ip("10.200.4.0"), 24, ip("10.200.3.0"), 24));
        assert!(!overlaps(ip("192.0.2.0"), 24, ip("10.200.3.0"), 24));
        assert!(overlaps(ip("0.0.0.0"), 0, ip("10.200.3.0"), 24));
    }

    #[test]
    fn names_fit_ifnamsiz() {
        // The longest PID Linux hands out (pid_max ≤ 2^22) and two-digit instance/node numbers.
        assert!(check_ifname("bj4194304x99v99").is_ok());
        assert!(check_ifname("bjbr4194304x99").is_ok());
        assert!(check_ifname("bj4194304x999v99").is_err());
        assert!(check_node_name("n1").is_ok());
        assert!(check_node_name("").is_err());
        assert!(check_node_name("a b").is_err());
        assert!(check_node_name("../x").is_err());
    }

    #[test]
    fn netem_plan_applies_what_was_asked() {
        let host = Ipv4Addr::new(10, 200, 0, 1);
        let fault = LinkFault { delay_ms: 50, jitter_ms: 10, loss_percent: 10.0 };
        let plan = plan_link_fault("n2", &fault, true, host);
        assert_eq!(plan.qdisc.unwrap(), ["netem", "delay", "50ms", "10ms", "loss", "10%"]);
        assert!(plan.link_rules.is_empty());
        assert!(plan.description.starts_with("delay 50ms ±10ms, loss 10% via netem"), "{}", plan.description);
    }

    #[test]
    fn fallback_plan_says_what_it_substituted() {
        let host = Ipv4Addr::new(10, 200, 0, 1);
        let fault = LinkFault { delay_ms: 50, jitter_ms: 10, loss_percent: 10.0 };
        let plan = plan_link_fault("n2", &fault, false, host);
        assert_eq!(plan.qdisc.unwrap(), ["tbf", "rate", "240000bit", "burst", "1600", "latency", "5000ms"]);
        assert!(plan.link_rules.contains("-s 10.200.0.1/32 -j RETURN"));
        assert!(plan.link_rules.contains("--probability 0.100000 -j DROP"));
        let d = &plan.description;
        assert!(d.contains("loss 10% in each direction via iptables statistic"), "{d}");
        assert!(d.contains("delay 50ms unavailable: kernel lacks sch_netem, applied tbf rate 240000bit"), "{d}");
        assert!(d.contains("jitter 10ms not applied"), "{d}");

        let only_loss = plan_link_fault("n1", &LinkFault { loss_percent: 100.0, ..LinkFault::default() }, false, host);
        assert_eq!(only_loss.qdisc, None);
        assert!(only_loss.link_rules.contains("--probability 1.000000"));
        let nothing = plan_link_fault("n1", &LinkFault::default(), false, host);
        assert_eq!((nothing.qdisc, nothing.link_rules.as_str()), (None, ""));
    }

    #[test]
    fn run_reports_command_and_stderr() {
        let out = run("sh", &["-c", "echo hi"], Duration::from_secs(5)).unwrap();
        assert_eq!(out, "hi\n");
        let err = run("sh", &["-c", "echo bad >&2; exit 3"], Duration::from_secs(5)).unwrap_err().to_string();
        assert!(err.contains("`sh -c 'echo bad >&2; exit 3'` failed"), "{err}");
        assert!(err.contains("bad"), "{err}");
        let started = Instant::now();
        let err = run("sleep", &["30"], Duration::from_millis(200)).unwrap_err().to_string();
        assert!(err.contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let err = run("/nonexistent/berth-tool", &[] as &[&str], Duration::from_secs(1)).unwrap_err().to_string();
        assert!(err.contains("could not start"), "{err}");
        let echoed = run_with_input("cat", &[] as &[&str], Some("line\n"), Duration::from_secs(5)).unwrap();
        assert_eq!(echoed, "line\n");
    }
}
