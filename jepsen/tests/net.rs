//! The test network on the real kernel: namespaces, bridge, partitions, link faults,
//! teardown and the sweep of leftovers. Needs root (skipped with a notice otherwise).
//!
//! Traffic is checked with plain TCP: echo servers and clients run on threads of this test
//! process that joined a node's namespace (`setns` moves only the calling thread), so no
//! helper programs are needed and nothing outlives the test.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use berth_jepsen::net::{require_root, run, sweep_stale, LinkFault, Network};
use berth_jepsen::partition::{self, Grudge, PartitionKind};
use rand::rngs::StdRng;
use rand::SeedableRng;

const PORT: u16 = 7000;
const NETNS_DIR: &str = "/var/run/netns";
const CMD_TIMEOUT: Duration = Duration::from_secs(10);

fn root_or_skip() -> bool {
    match require_root() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skipping: {e}");
            false
        }
    }
}

/// Moves the calling thread into namespace `ns`.
fn enter(ns: &str) {
    let file = File::open(format!("{NETNS_DIR}/{ns}")).unwrap_or_else(|e| panic!("opening netns {ns}: {e}"));
    // SAFETY: a valid namespace fd; CLONE_NEWNET affects only this thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a thread inside `ns` (or in the host namespace for `None`).
fn in_netns<T: Send>(ns: Option<&str>, f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|s| {
        s.spawn(|| {
            if let Some(ns) = ns {
                enter(ns);
            }
            f()
        })
        .join()
        .expect("netns thread")
    })
}

/// One echo exchange from `from`'s namespace to `to`, with short timeouts: a dropped SYN
/// shows up as a connect timeout well under a second.
fn reaches(from: Option<&str>, to: SocketAddrV4) -> bool {
    in_netns(from, || {
        let timeout = Duration::from_millis(700);
        let Ok(mut stream) = TcpStream::connect_timeout(&to.into(), timeout) else { return false };
        let _ = stream.set_read_timeout(Some(timeout));
        let _ = stream.set_write_timeout(Some(timeout));
        let mut reply = [0u8; 4];
        stream.write_all(b"ping").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"ping"
    })
}

/// Polls until `from` reaches `to` (links, ARP and rule changes settle within moments).
fn eventually_reaches(from: Option<&str>, to: SocketAddrV4) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if reaches(from, to) {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A TCP echo server on a thread inside a node's namespace; stopped and joined on drop.
struct EchoServer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl EchoServer {
    fn start(ns: &str, ip: Ipv4Addr) -> EchoServer {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (ns, flag) = (ns.to_string(), stop.clone());
        let handle = thread::spawn(move || {
            enter(&ns);
            let listener = match TcpListener::bind((ip, PORT)).and_then(|l| l.set_nonblocking(true).map(|_| l)) {
                Ok(l) => l,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            // Bounded even if the test forgets to stop it.
            let deadline = Instant::now() + Duration::from_secs(300);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                        let mut buf = [0u8; 64];
                        if let Ok(n) = stream.read(&mut buf) {
                            let _ = stream.write_all(&buf[..n]);
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        let ready = ready_rx.recv_timeout(Duration::from_secs(10)).expect("echo server starts");
        ready.unwrap_or_else(|e| panic!("echo server on {ip}:{PORT}: {e}"));
        EchoServer { stop, handle: Some(handle) }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A child process, killed by PID when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn addr(net: &Network, node: &str) -> SocketAddrV4 {
    SocketAddrV4::new(net.node(node).expect("node").ip, PORT)
}

fn ns<'a>(net: &'a Network, node: &str) -> Option<&'a str> {
    Some(net.node(node).expect("node").netns.as_str())
}

fn netns_list() -> BTreeSet<String> {
    std::fs::read_dir(NETNS_DIR)
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default()
}

fn host_links() -> BTreeSet<String> {
    let json = run("ip", &["-j", "link", "show"], CMD_TIMEOUT).expect("ip -j link show");
    let links: Vec<serde_json::Value> = serde_json::from_str(&json).expect("ip json");
    links.iter().filter_map(|l| l["ifname"].as_str().map(String::from)).collect()
}

fn isolate(node: &str, all: &[&str]) -> Grudge {
    let mut g: Grudge = all.iter().map(|n| (n.to_string(), BTreeSet::new())).collect();
    for other in all.iter().filter(|o| **o != node) {
        g.get_mut(node).expect("node").insert(other.to_string());
        g.get_mut(*other).expect("node").insert(node.to_string());
    }
    g
}

#[test]
fn partitions_cut_peers_but_never_clients() {
    if !root_or_skip() {
        return;
    }
    let mut net = Network::create(&names(&["n1", "n2", "n3"])).expect("create network");
    let host = net.host_ip();
    let [a, b, c, _] = host.octets();
    let ips: Vec<Ipv4Addr> = net.nodes().iter().map(|n| n.ip).collect();
    assert_eq!(ips, [11, 12, 13].map(|h| Ipv4Addr::new(a, b, c, h)));
    assert!(a == 10 && (200..=254).contains(&b) && host.octets()[3] == 1, "host ip {host}");
    let tag = net.nodes()[0].netns.strip_suffix("-n1").expect("netns bj<tag>-n1").to_string();
    assert!(tag.starts_with("bj") && tag[2..].starts_with(&std::process::id().to_string()), "{tag}");

    // exec_prefix runs the program itself (same PID) inside the node's namespace.
    let prefix = net.exec_prefix("n2");
    assert_eq!(prefix[..3], ["ip", "netns", "exec"]);
    let mut child = ChildGuard(
        Command::new(&prefix[0])
            .args(&prefix[1..])
            .args(["sleep", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sleep in n2"),
    );
    let pid = child.0.id();
    let want_ino = std::fs::metadata(format!("{NETNS_DIR}/{}", net.node("n2").unwrap().netns)).unwrap().ino();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = (String::new(), String::new());
    while Instant::now() < deadline {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let ns_link = std::fs::read_link(format!("/proc/{pid}/ns/net")).map(|p| p.display().to_string());
        seen = (comm.trim().to_string(), ns_link.unwrap_or_default());
        if seen.0 == "sleep" && seen.1 == format!("net:[{want_ino}]") {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(seen, ("sleep".to_string(), format!("net:[{want_ino}]")), "pid {pid} should be sleep inside n2's netns");
    let _ = child.0.kill();
    let _ = child.0.wait();

    let in_n1 =
        run("ip", &["-n", &net.node("n1").unwrap().netns, "-4", "-o", "addr", "show", "dev", "eth0"], CMD_TIMEOUT)
            .expect("ip addr in n1");
    assert!(in_n1.contains(&format!("{}/24", ips[0])), "{in_n1}");

    let _servers: Vec<EchoServer> = net.nodes().iter().map(|n| EchoServer::start(&n.netns, n.ip)).collect();
    for node in ["n1", "n2", "n3"] {
        assert!(eventually_reaches(None, addr(&net, node)), "host -> {node}");
    }
    for (from, to) in [("n1", "n2"), ("n2", "n3"), ("n3", "n1")] {
        assert!(eventually_reaches(ns(&net, from), addr(&net, to)), "{from} -> {to}");
    }

    // Isolate n1 (as the nemesis would, with n1 as the leader).
    let grudge = partition::grudge(
        PartitionKind::IsolateLeader,
        &names(&["n1", "n2", "n3"]),
        Some("n1"),
        &mut StdRng::seed_from_u64(1),
    );
    assert_eq!(partition::describe(&grudge), "n1 | n2 n3");
    net.apply_grudge(&grudge).expect("apply grudge");
    let started = Instant::now();
    assert!(!reaches(ns(&net, "n1"), addr(&net, "n2")), "n1 -> n2 must be cut");
    assert!(!reaches(ns(&net, "n2"), addr(&net, "n1")), "n2 -> n1 must be cut");
    assert!(!reaches(ns(&net, "n3"), addr(&net, "n1")), "n3 -> n1 must be cut");
    assert!(started.elapsed() < Duration::from_secs(5), "blocked connects time out quickly");
    assert!(reaches(ns(&net, "n2"), addr(&net, "n3")), "n2 -> n3 stays");
    assert!(reaches(None, addr(&net, "n1")), "clients reach the isolated node");
    assert!(reaches(None, addr(&net, "n2")), "clients reach the majority");

    // A new grudge replaces the old one rather than adding to it.
    net.apply_grudge(&isolate("n3", &["n1", "n2", "n3"])).expect("apply second grudge");
    assert!(eventually_reaches(ns(&net, "n1"), addr(&net, "n2")), "n1 -> n2 back");
    assert!(!reaches(ns(&net, "n2"), addr(&net, "n3")), "n2 -> n3 now cut");
    assert!(!reaches(ns(&net, "n3"), addr(&net, "n1")), "n3 -> n1 now cut");

    net.heal_partition().expect("heal");
    for (from, to) in [("n1", "n2"), ("n2", "n3"), ("n3", "n1"), ("n2", "n1"), ("n1", "n3")] {
        assert!(eventually_reaches(ns(&net, from), addr(&net, to)), "{from} -> {to} after heal");
    }

    // Link faults: the description says what was really done.
    let n2_ns = net.node("n2").unwrap().netns.clone();
    let description =
        net.set_link_fault("n2", &LinkFault { delay_ms: 50, jitter_ms: 10, loss_percent: 10.0 }).expect("link fault");
    eprintln!("link fault on n2: {description}");
    let qdisc = run("tc", &["-n", &n2_ns, "qdisc", "show", "dev", "eth0", "root"], CMD_TIMEOUT).expect("tc show");
    if Network::netem_available() {
        assert!(description.contains("netem") && qdisc.contains("netem"), "{description} / {qdisc}");
    } else {
        assert!(description.contains("loss 10%") && description.contains("iptables statistic"), "{description}");
        assert!(description.contains("kernel lacks sch_netem") && description.contains("tbf"), "{description}");
        assert!(qdisc.contains("tbf"), "{qdisc}");
        // Total loss: peers are cut off, clients are exempt.
        let all_lost =
            net.set_link_fault("n2", &LinkFault { loss_percent: 100.0, ..LinkFault::default() }).expect("100% loss");
        assert!(!all_lost.contains("tbf"), "{all_lost}");
        let qdisc = run("tc", &["-n", &n2_ns, "qdisc", "show", "dev", "eth0", "root"], CMD_TIMEOUT).expect("tc show");
        assert!(!qdisc.contains("tbf"), "the previous fault's qdisc is replaced: {qdisc}");
        assert!(!reaches(ns(&net, "n3"), addr(&net, "n2")), "n3 -> n2 lost");
        assert!(!reaches(ns(&net, "n2"), addr(&net, "n1")), "n2 -> n1 lost");
        assert!(reaches(None, addr(&net, "n2")), "clients exempt from loss");
    }
    net.clear_link_fault("n2").expect("clear link fault");
    let qdisc = run("tc", &["-n", &n2_ns, "qdisc", "show", "dev", "eth0", "root"], CMD_TIMEOUT).expect("tc show");
    assert!(!qdisc.contains("tbf") && !qdisc.contains("netem"), "{qdisc}");
    assert!(eventually_reaches(ns(&net, "n3"), addr(&net, "n2")), "n3 -> n2 after clearing");
    net.clear_link_fault("n2").expect("clearing twice is fine");

    // A node added later joins the same network and takes part in partitions.
    let n4 = net.add_node("n4").expect("add n4").clone();
    assert_eq!(n4.ip, Ipv4Addr::new(a, b, c, 14));
    assert!(net.add_node("n4").is_err(), "duplicate node");
    let _n4_server = EchoServer::start(&n4.netns, n4.ip);
    assert!(eventually_reaches(None, addr(&net, "n4")), "host -> n4");
    assert!(eventually_reaches(ns(&net, "n4"), addr(&net, "n1")), "n4 -> n1");
    net.apply_grudge(&isolate("n4", &["n1", "n2", "n3", "n4"])).expect("isolate n4");
    assert!(!reaches(ns(&net, "n1"), addr(&net, "n4")), "n1 -> n4 cut");
    assert!(reaches(None, addr(&net, "n4")), "host -> n4 still");
    let unknown: Grudge = [("n9".to_string(), BTreeSet::from(["n1".to_string()]))].into();
    assert!(net.apply_grudge(&unknown).is_err(), "unknown node in grudge");

    drop(_n4_server);
    drop(_servers);
    let ours: Vec<String> = net.nodes().iter().map(|n| n.netns.clone()).chain([tag.clone()]).collect();
    assert!(ours.iter().all(|n| netns_list().contains(n)), "namespaces exist before destroy");
    assert!(host_links().contains(&format!("{tag}h")), "host veth exists before destroy");
    net.destroy();
    net.destroy();
    let left = netns_list();
    assert!(ours.iter().all(|n| !left.contains(n)), "namespaces left: {left:?}");
    let links = host_links();
    assert!(!links.contains(&format!("{tag}h")), "host veth left: {links:?}");
    assert!(!links.iter().any(|l| *l == format!("bjbr{}", &tag[2..])), "bridge left: {links:?}");
    assert!(net.heal_partition().is_err(), "a destroyed network refuses work");
}

#[test]
fn networks_of_one_process_do_not_collide() {
    if !root_or_skip() {
        return;
    }
    let first = Network::create(&names(&["a", "b"])).expect("first");
    let second = Network::create(&names(&["a", "b"])).expect("second");
    assert_ne!(first.node("a").unwrap().netns, second.node("a").unwrap().netns);
    assert_ne!(first.host_ip(), second.host_ip());
    let a1 = first.node("a").unwrap();
    let a2 = second.node("a").unwrap();
    let _s1 = EchoServer::start(&a1.netns, a1.ip);
    let _s2 = EchoServer::start(&a2.netns, a2.ip);
    assert!(eventually_reaches(None, SocketAddrV4::new(a1.ip, PORT)));
    assert!(eventually_reaches(None, SocketAddrV4::new(a2.ip, PORT)));
    // The networks are separate: a node of one cannot reach a node of the other.
    assert!(!reaches(Some(&second.node("b").unwrap().netns), SocketAddrV4::new(a1.ip, PORT)));
    assert!(Network::create(&names(&["x", "x"])).is_err(), "duplicate names");
    assert!(Network::create(&names(&["bad name"])).is_err(), "invalid name");
}

/// What the sweep test created by hand, removed again even if an assertion fails.
struct Leftovers {
    netns: Vec<String>,
    links: Vec<String>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for link in &self.links {
            let _ = run("ip", &["link", "del", "dev", link], CMD_TIMEOUT);
        }
        for ns in &self.netns {
            let _ = run("ip", &["netns", "del", ns], CMD_TIMEOUT);
        }
    }
}

#[test]
fn sweep_removes_only_leftovers_of_dead_processes() {
    if !root_or_skip() {
        return;
    }
    let pid_max: u32 =
        std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(32768);
    let dead = (pid_max.saturating_sub(1000)..pid_max)
        .rev()
        .find(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        .expect("a PID nobody uses");
    let switch = format!("bj{dead}");
    let node = format!("bj{dead}-n1");
    let uplink = format!("bj{dead}h");
    let bridge = format!("bjbr{dead}");
    // PID 1 is always alive: its look-alike must survive the sweep.
    let live = "bj1-decoy".to_string();
    let _cleanup = Leftovers {
        netns: vec![switch.clone(), node.clone(), live.clone()],
        links: vec![uplink.clone(), bridge.clone()],
    };
    for args in [
        vec!["netns", "add", &switch],
        vec!["netns", "add", &node],
        vec!["netns", "add", &live],
        vec!["link", "add", &uplink, "type", "veth", "peer", "name", "uplink", "netns", &switch],
        vec!["link", "add", &bridge, "type", "bridge"],
    ] {
        run("ip", &args, CMD_TIMEOUT).expect("making a leftover");
    }

    let removed: BTreeSet<String> = sweep_stale().into_iter().collect();
    for expected in
        [format!("netns {switch}"), format!("netns {node}"), format!("link {uplink}"), format!("link {bridge}")]
    {
        assert!(removed.contains(&expected), "{expected} not in {removed:?}");
    }
    assert!(!removed.iter().any(|r| r.contains("bj1-")), "{removed:?}");
    let left = netns_list();
    assert!(!left.contains(&switch) && !left.contains(&node), "{left:?}");
    assert!(left.contains(&live), "a live owner's namespace was swept");
    let links = host_links();
    assert!(!links.contains(&uplink) && !links.contains(&bridge), "{links:?}");
}

#[test]
fn a_failed_add_node_leaves_nothing_behind() {
    if !root_or_skip() {
        return;
    }
    let mut net = Network::create(&names(&["n1"])).expect("create network");
    let switch = net.node("n1").unwrap().netns.strip_suffix("-n1").expect("bj<tag>-n1").to_string();
    // Occupy the switch-side port name the next node would get, so its veth cannot be made
    // after its namespace already exists.
    let port = format!("{switch}v1");
    run("ip", &["-n", &switch, "link", "add", &port, "type", "bridge"], CMD_TIMEOUT).expect("placeholder port");
    let err = net.add_node("n2").expect_err("the port name is taken").to_string();
    assert!(err.contains(&format!("`ip -n {switch} link add {port} type veth")), "error names the command: {err}");
    assert!(err.contains("exists"), "error carries stderr: {err}");
    assert!(!netns_list().contains(&format!("{switch}-n2")), "the half-made namespace was removed");
    assert!(net.node("n2").is_none());
    // The clean-up freed the name, and the network is still usable.
    let n2 = net.add_node("n2").expect("second try").clone();
    let n1 = net.node("n1").unwrap().clone();
    let _server = EchoServer::start(&n2.netns, n2.ip);
    assert!(eventually_reaches(Some(&n1.netns), SocketAddrV4::new(n2.ip, PORT)), "n1 -> n2");
}
