//! The service proxy's nftables rules (pure), laid out as kube-proxy's nftables mode, in one
//! table of the agent's own (`ip berth-proxy`):
//!
//! * `services` (nat, prerouting and output): a verdict map from `address . protocol .
//!   port` (cluster IPs, external and load-balancer IPs) and from `protocol . port` on the
//!   node's own addresses (NodePorts; not loopback) to a Service port's chain;
//! * a Service port's chain marks for masquerade what needs it — cluster-IP traffic from
//!   outside the cluster CIDR, NodePort/external traffic unless `externalTrafficPolicy:
//!   Local` —, then DNATs to an endpoint picked at random (rule j of n taken with
//!   probability 1/(n-j), as kube-proxy's iptables mode). Unlike kube-proxy's nftables
//!   mode there is no chain and no anonymous map per endpoint or Service: the kernel's time
//!   to load a ruleset grows faster than linearly with chains and sets, and 1,000 Services ×
//!   10 endpoints would be 11,000 chains;
//! * `hairpin` (nat postrouting) marks for masquerade a connection whose DNAT sent an
//!   endpoint back to itself (source equals destination), so the reply comes through NAT;
//! * with `sessionAffinity: ClientIP` only, each endpoint gets a chain and an nft set with
//!   timeout that remembers its clients, and the Service chain first sends a known client
//!   back to its endpoint;
//! * `endpoints-check` (filter, before NAT) rejects new connections to Service ports without
//!   endpoints (a TCP reset, ICMP otherwise) instead of letting them hang;
//! * `masquerading` (nat postrouting) masquerades what was marked.
//!
//! [`Rules::of`] describes the wanted state: the chains of Service ports (and affine
//! endpoints), named by a hash of what they serve, so a name stays the same across syncs, the affinity
//! sets and the elements of the four maps. [`Rules::full`] is the script that builds the
//! table from nothing (replacing any old one); [`Rules::changes_from`] the script that turns
//! one state into the next touching only what differs — changed chains are flushed and
//! refilled, map elements added and deleted, unused chains and sets deleted last —, as
//! kube-proxy's nftables mode syncs. Either is one `nft -f` transaction: packets see the old
//! rules or the new ones, never a mix.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use berth_proto::model::cidr::Ipv4Cidr;
use sha2::{Digest, Sha256};

use super::model::{ServicePortPlan, Target};

/// The proxy's nftables table (family `ip`).
pub const TABLE: &str = "berth-proxy";
/// The packet mark bit that asks for masquerade (kube-proxy's).
const MASQUERADE_MARK: &str = "0x4000";
/// The node's own addresses, not loopback (as kube-proxy's default nodePortAddresses).
const NODE_ADDRESS: &str = "fib daddr type local ip daddr != 127.0.0.0/8";

/// The verdict maps and their key types.
const MAPS: [(&str, &str); 5] = [
    ("service-ips", "ipv4_addr . inet_proto . inet_service"),
    ("service-nodeports", "inet_proto . inet_service"),
    ("no-endpoint-services", "ipv4_addr . inet_proto . inet_service"),
    ("no-endpoint-nodeports", "inet_proto . inet_service"),
    // Source . destination after DNAT: an endpoint that reached itself through a Service.
    ("hairpin", "ipv4_addr . ipv4_addr"),
];

/// The wanted state of the table's variable part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// Chain name → its rules.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Affinity set name → its timeout in seconds.
    pub sets: BTreeMap<String, u32>,
    /// Map name → key → verdict.
    pub maps: BTreeMap<&'static str, BTreeMap<String, String>>,
}

/// A short stable name for `what` (kube-proxy hashes the same way): `prefix-` and 12 hex
/// digits of its SHA-256.
fn stable_name(prefix: &str, what: &str) -> String {
    let digest = Sha256::digest(what.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}

impl Rules {
    /// The rules for `plans` (pure).
    pub fn of(plans: &[ServicePortPlan], cluster_cidr: &Ipv4Cidr) -> Rules {
        let mut rules = Rules::default();
        for (name, _) in MAPS {
            rules.maps.insert(name, BTreeMap::new());
        }
        for plan in plans {
            let proto = plan.protocol.nft();
            let key = format!("{}/{proto}", plan.id);
            if let Some(ip) = plan.cluster_ip {
                let element = format!("{ip} . {proto} . {}", plan.port);
                if plan.internal.is_empty() {
                    rules.element("no-endpoint-services", element, "goto reject-chain".into());
                } else {
                    let chain = stable_name("svc", &key);
                    let masquerade = format!("ip saddr != {cluster_cidr} jump mark-for-masquerade");
                    rules.service_chain(&chain, &key, "int", plan, &plan.internal, Some(&masquerade));
                    rules.element("service-ips", element, format!("goto {chain}"));
                }
            }
            let external = stable_name("ext", &key);
            let has_external = !plan.external_ips.is_empty() || plan.node_port.is_some();
            if has_external && !plan.external.is_empty() {
                let masquerade = (!plan.external_local).then_some("jump mark-for-masquerade");
                rules.service_chain(&external, &key, "ext", plan, &plan.external, masquerade);
            }
            let verdict =
                if plan.external.is_empty() { "goto reject-chain".to_string() } else { format!("goto {external}") };
            let (ips_map, ports_map) = if plan.external.is_empty() {
                ("no-endpoint-services", "no-endpoint-nodeports")
            } else {
                ("service-ips", "service-nodeports")
            };
            for ip in &plan.external_ips {
                rules.element(ips_map, format!("{ip} . {proto} . {}", plan.port), verdict.clone());
            }
            if let Some(node_port) = plan.node_port {
                rules.element(ports_map, format!("{proto} . {node_port}"), verdict.clone());
            }
        }
        rules
    }

    fn element(&mut self, map: &'static str, key: String, verdict: String) {
        self.maps.entry(map).or_default().insert(key, verdict);
    }

    /// A Service port's chain over `targets`, with its endpoints' chains and affinity sets.
    /// `kind` keeps the internal and external endpoint chains apart.
    fn service_chain(
        &mut self,
        chain: &str,
        key: &str,
        kind: &str,
        plan: &ServicePortPlan,
        targets: &[Target],
        masquerade: Option<&str>,
    ) {
        let endpoint = |t: &Target| stable_name("ep", &format!("{key}/{kind}/{}:{}", t.ip, t.port));
        let affinity = |t: &Target| stable_name("aff", &format!("{key}/{kind}/{}:{}", t.ip, t.port));
        let mut rules = vec![format!("comment \"{}\"", plan.id)];
        rules.extend(masquerade.map(String::from));
        let proto = plan.protocol.nft();
        for t in targets {
            self.element("hairpin", format!("{} . {}", t.ip, t.ip), "jump mark-for-masquerade".into());
        }
        if plan.affinity_seconds.is_none() {
            // No sets and no chains per endpoint (loading thousands of either is what costs
            // the kernel time): the endpoint is picked as kube-proxy's iptables mode does,
            // rule j matching with probability 1/(n-j), each a terminal DNAT.
            let last = targets.len().saturating_sub(1);
            for (j, t) in targets.iter().enumerate() {
                let pick =
                    if j == last { String::new() } else { format!("numgen random mod {} == 0 ", targets.len() - j) };
                rules.push(format!("{pick}meta l4proto {proto} dnat to {}:{}", t.ip, t.port));
            }
            self.chains.insert(chain.to_string(), rules);
            return;
        }
        // sessionAffinity: ClientIP: an endpoint chain per endpoint, which records its
        // clients in its own set.
        let seconds = plan.affinity_seconds.unwrap_or_default();
        for t in targets {
            rules.push(format!("ip saddr @{} goto {}", affinity(t), endpoint(t)));
            self.sets.insert(affinity(t), seconds);
        }
        let choices: Vec<String> =
            targets.iter().enumerate().map(|(j, t)| format!("{j} : goto {}", endpoint(t))).collect();
        rules.push(format!("numgen random mod {} vmap {{ {} }}", targets.len(), choices.join(", ")));
        self.chains.insert(chain.to_string(), rules);
        for t in targets {
            let ep = vec![
                format!("update @{} {{ ip saddr }}", affinity(t)),
                format!("meta l4proto {proto} dnat to {}:{}", t.ip, t.port),
            ];
            self.chains.insert(endpoint(t), ep);
        }
    }

    /// The script that builds the whole table from nothing (any old table goes first).
    pub fn full(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{");
        for (name, key) in MAPS {
            let _ = write!(out, "\tmap {name} {{\n\t\ttype {key} : verdict\n");
            let elements = &self.maps[name];
            if !elements.is_empty() {
                let list: Vec<String> = elements.iter().map(|(k, v)| format!("{k} : {v}")).collect();
                let _ = writeln!(out, "\t\telements = {{ {} }}", list.join(", "));
            }
            out.push_str("\t}\n");
        }
        out.push_str(&skeleton());
        for (name, seconds) in &self.sets {
            let _ = writeln!(
                out,
                "\tset {name} {{\n\t\ttype ipv4_addr\n\t\tflags dynamic,timeout\n\t\ttimeout {seconds}s\n\t}}"
            );
        }
        // One block: nft resolves jumps to chains defined further down at commit.
        for (name, rules) in &self.chains {
            let _ = writeln!(out, "\tchain {name} {{");
            for rule in rules {
                let _ = writeln!(out, "\t\t{rule}");
            }
            out.push_str("\t}\n");
        }
        out.push_str("}\n");
        out
    }

    /// The script that turns `old` (what the table holds) into `self`, touching only what
    /// differs; empty when nothing does.
    pub fn changes_from(&self, old: &Rules) -> String {
        let mut out = String::new();
        for (name, seconds) in &self.sets {
            if old.sets.get(name) != Some(seconds) {
                if old.sets.contains_key(name) {
                    let _ = writeln!(out, "delete set ip {TABLE} {name}");
                }
                let _ = writeln!(
                    out,
                    "add set ip {TABLE} {name} {{ type ipv4_addr; flags dynamic,timeout; timeout {seconds}s; }}"
                );
            }
        }
        for name in self.chains.keys().filter(|n| !old.chains.contains_key(*n)) {
            let _ = writeln!(out, "add chain ip {TABLE} {name}");
        }
        for (name, rules) in &self.chains {
            match old.chains.get(name) {
                Some(previous) if previous == rules => continue,
                Some(_) => {
                    let _ = writeln!(out, "flush chain ip {TABLE} {name}");
                }
                None => {}
            }
            for rule in rules {
                let _ = writeln!(out, "{}", rule_command(name, rule));
            }
        }
        for (map, elements) in &self.maps {
            let before = old.maps.get(map);
            for (key, verdict) in elements {
                match before.and_then(|b| b.get(key)) {
                    Some(v) if v == verdict => continue,
                    Some(_) => {
                        let _ = writeln!(out, "delete element ip {TABLE} {map} {{ {key} }}");
                    }
                    None => {}
                }
                let _ = writeln!(out, "add element ip {TABLE} {map} {{ {key} : {verdict} }}");
            }
            for key in before.into_iter().flatten().map(|(k, _)| k).filter(|k| !elements.contains_key(*k)) {
                let _ = writeln!(out, "delete element ip {TABLE} {map} {{ {key} }}");
            }
        }
        // What nothing refers to any more goes last: chains before the sets they use.
        for name in old.chains.keys().filter(|n| !self.chains.contains_key(*n)) {
            let _ = writeln!(out, "flush chain ip {TABLE} {name}");
        }
        for name in old.chains.keys().filter(|n| !self.chains.contains_key(*n)) {
            let _ = writeln!(out, "delete chain ip {TABLE} {name}");
        }
        let kept: BTreeSet<&String> = self.sets.keys().collect();
        for name in old.sets.keys().filter(|n| !kept.contains(n)) {
            let _ = writeln!(out, "delete set ip {TABLE} {name}");
        }
        out
    }
}

/// `add rule` for one line of a chain (a `comment "…"` line is the chain's comment, kept as
/// the first rule's comment).
fn rule_command(chain: &str, rule: &str) -> String {
    match rule.strip_prefix("comment ") {
        Some(comment) => format!("add rule ip {TABLE} {chain} counter comment {comment}"),
        None => format!("add rule ip {TABLE} {chain} {rule}"),
    }
}

/// The fixed part: hooks, the service and no-endpoint dispatch, reject and masquerade.
fn skeleton() -> String {
    format!(
        "\tchain nat-prerouting {{\n\t\ttype nat hook prerouting priority -100; policy accept;\n\t\tjump services\n\t}}\n\
         \tchain nat-output {{\n\t\ttype nat hook output priority -100; policy accept;\n\t\tjump services\n\t}}\n\
         \tchain nat-postrouting {{\n\t\ttype nat hook postrouting priority 100; policy accept;\n\t\tip saddr . ip daddr vmap @hairpin\n\t\tjump masquerading\n\t}}\n\
         \tchain filter-input {{\n\t\ttype filter hook input priority -110; policy accept;\n\t\tct state new jump endpoints-check\n\t}}\n\
         \tchain filter-forward {{\n\t\ttype filter hook forward priority -110; policy accept;\n\t\tct state new jump endpoints-check\n\t}}\n\
         \tchain filter-output {{\n\t\ttype filter hook output priority -110; policy accept;\n\t\tct state new jump endpoints-check\n\t}}\n\
         \tchain endpoints-check {{\n\t\tip daddr . meta l4proto . th dport vmap @no-endpoint-services\n\
         \t\t{NODE_ADDRESS} meta l4proto . th dport vmap @no-endpoint-nodeports\n\t}}\n\
         \tchain reject-chain {{\n\t\tmeta l4proto tcp reject with tcp reset\n\t\treject\n\t}}\n\
         \tchain services {{\n\t\tip daddr . meta l4proto . th dport vmap @service-ips\n\
         \t\t{NODE_ADDRESS} meta l4proto . th dport vmap @service-nodeports\n\t}}\n\
         \tchain mark-for-masquerade {{\n\t\tmeta mark set meta mark | {MASQUERADE_MARK}\n\t}}\n\
         \tchain masquerading {{\n\t\tmeta mark & {MASQUERADE_MARK} == 0 return\n\
         \t\tmeta mark set meta mark ^ {MASQUERADE_MARK}\n\t\tmasquerade fully-random\n\t}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::model::Protocol;
    use std::net::Ipv4Addr;

    fn plan(id: &str, internal: Vec<Target>, node_port: Option<u16>) -> ServicePortPlan {
        ServicePortPlan {
            id: id.into(),
            protocol: Protocol::Tcp,
            cluster_ip: Some(Ipv4Addr::new(10, 96, 0, 10)),
            port: 80,
            node_port,
            external_ips: vec![],
            external: internal.clone(),
            internal,
            external_local: false,
            affinity_seconds: None,
        }
    }

    fn target(ip: [u8; 4]) -> Target {
        Target { ip: Ipv4Addr::from(ip), port: 8080, local: true }
    }

    fn cidr() -> Ipv4Cidr {
        "10.244.0.0/16".parse().unwrap()
    }

    #[test]
    fn a_service_maps_to_a_random_endpoint_and_its_node_port_too() {
        let p = plan("default/web:http", vec![target([10, 244, 0, 2]), target([10, 244, 1, 2])], Some(30080));
        let rules = Rules::of(&[p], &cidr());
        let svc = stable_name("svc", "default/web:http/tcp");
        assert_eq!(rules.maps["service-ips"]["10.96.0.10 . tcp . 80"], format!("goto {svc}"));
        assert_eq!(
            rules.maps["service-nodeports"]["tcp . 30080"],
            format!("goto {}", stable_name("ext", "default/web:http/tcp"))
        );
        let chain = &rules.chains[&svc];
        assert!(chain.contains(&"ip saddr != 10.244.0.0/16 jump mark-for-masquerade".to_string()), "{chain:?}");
        assert_eq!(rules.maps["hairpin"]["10.244.1.2 . 10.244.1.2"], "jump mark-for-masquerade");
        assert_eq!(
            chain[chain.len() - 2..],
            [
                "numgen random mod 2 == 0 meta l4proto tcp dnat to 10.244.0.2:8080",
                "meta l4proto tcp dnat to 10.244.1.2:8080"
            ]
        );
        assert_eq!(
            rules.chains.len(),
            2,
            "a Service port's chains only (internal, external): {:?}",
            rules.chains.keys()
        );
        let full = rules.full();
        assert!(full.starts_with("table ip berth-proxy\ndelete table ip berth-proxy\n"), "replaced whole");
        assert!(full.contains(&format!("\tchain {svc} {{\n\t\tcomment \"default/web:http\"\n")), "{full}");
    }

    #[test]
    fn a_change_touches_only_what_differs() {
        let before = Rules::of(
            &[
                plan("default/web:http", vec![target([10, 244, 0, 2]), target([10, 244, 1, 2])], None),
                plan("default/other:http", vec![target([10, 244, 0, 9])], None),
            ],
            &cidr(),
        );
        assert_eq!(before.changes_from(&before), "", "nothing to do");
        let after = Rules::of(
            &[
                plan("default/web:http", vec![target([10, 244, 0, 2]), target([10, 244, 1, 3])], None),
                plan("default/other:http", vec![target([10, 244, 0, 9])], None),
            ],
            &cidr(),
        );
        let script = after.changes_from(&before);
        let web = stable_name("svc", "default/web:http/tcp");
        let other = stable_name("svc", "default/other:http/tcp");
        assert!(script.starts_with(&format!("flush chain ip berth-proxy {web}\n")), "{script}");
        assert!(script.contains("dnat to 10.244.1.3:8080"), "{script}");
        assert!(!script.contains(&other), "an unchanged Service's chain is left alone: {script}");
        assert!(!script.contains("service-ips"), "the service's map entry is unchanged: {script}");
        assert!(script.contains("delete element ip berth-proxy hairpin { 10.244.1.2 . 10.244.1.2 }"), "{script}");
        // Gone: its chain goes after the map entry that jumps to it.
        let gone = Rules::of(&[plan("default/web:http", vec![target([10, 244, 0, 2])], None)], &cidr());
        let script = gone.changes_from(&before);
        assert!(
            script.ends_with(&format!("flush chain ip berth-proxy {other}\ndelete chain ip berth-proxy {other}\n")),
            "{script}"
        );
        assert!(script.contains("delete element"), "{script}");
    }

    #[test]
    fn no_endpoints_is_a_reject_and_affinity_remembers_clients() {
        let rules = Rules::of(&[plan("default/empty:80", vec![], Some(30081))], &cidr());
        assert_eq!(rules.maps["no-endpoint-services"]["10.96.0.10 . tcp . 80"], "goto reject-chain");
        assert_eq!(rules.maps["no-endpoint-nodeports"]["tcp . 30081"], "goto reject-chain");
        assert!(rules.chains.is_empty());
        let mut sticky = plan("default/sticky:80", vec![target([10, 244, 0, 2])], None);
        sticky.affinity_seconds = Some(60);
        let rules = Rules::of(&[sticky], &cidr());
        let set = stable_name("aff", "default/sticky:80/tcp/int/10.244.0.2:8080");
        assert_eq!(rules.sets[&set], 60);
        let ep = stable_name("ep", "default/sticky:80/tcp/int/10.244.0.2:8080");
        assert!(rules.chains[&ep].contains(&format!("update @{set} {{ ip saddr }}")));
        assert!(
            rules.chains[&stable_name("svc", "default/sticky:80/tcp")].contains(&format!("ip saddr @{set} goto {ep}"))
        );
    }

    /// The real `nft` checks the scripts (`-c`: nothing is applied), where it can run.
    #[test]
    fn the_real_nft_accepts_full_and_incremental_scripts() {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if !root || std::process::Command::new("nft").arg("--version").output().is_err() {
            eprintln!("skipping: needs root and nft");
            return;
        }
        let check = |script: &str| {
            use std::io::Write;
            let mut child = std::process::Command::new("nft")
                .args(["-c", "-f", "-"])
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{}\n{script}", String::from_utf8_lossy(&out.stderr));
        };
        let mut sticky = plan("default/web:http", vec![target([10, 244, 0, 2]), target([10, 244, 1, 2])], Some(30080));
        sticky.affinity_seconds = Some(60);
        sticky.external_ips = vec![Ipv4Addr::new(192, 0, 2, 9)];
        let mut empty = plan("default/empty:80", vec![], Some(30081));
        empty.cluster_ip = Some(Ipv4Addr::new(10, 96, 0, 11));
        let rules = Rules::of(&[sticky, empty], &cidr());
        check(&rules.full());
    }
}
