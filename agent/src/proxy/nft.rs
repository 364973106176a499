//! The service proxy's nftables ruleset (pure), laid out as kube-proxy's nftables mode:
//! one table of the agent's own (`ip berth-proxy`), replaced whole and atomically by one
//! `nft -f` transaction, so packets see either the old rules or the new ones.
//!
//! * `services` (nat, prerouting and output): a verdict map from `address . protocol .
//!   port` (cluster IPs, external and load-balancer IPs) and from `protocol . port` on the
//!   node's own addresses (NodePorts; not loopback) to a Service port's chain;
//! * a Service port's chain marks for masquerade what needs it — cluster-IP traffic from
//!   outside the cluster CIDR, NodePort/external traffic unless `externalTrafficPolicy:
//!   Local` —, sends a client back to its affine endpoint (`sessionAffinity: ClientIP`, an
//!   nft set with timeout per endpoint), then picks an endpoint at random (`numgen`);
//! * an endpoint's chain masquerades hairpin traffic (a pod reaching itself through its
//!   Service) and DNATs to the endpoint;
//! * `endpoints-check` (filter, before NAT) rejects new connections to Service ports without
//!   endpoints (a TCP reset, ICMP otherwise) instead of letting them hang;
//! * `masquerading` (nat postrouting) masquerades what was marked.

use std::fmt::Write;

use berth_proto::model::cidr::Ipv4Cidr;

use super::model::{ServicePortPlan, Target};

/// The proxy's nftables table (family `ip`).
pub const TABLE: &str = "berth-proxy";
/// The packet mark bit that asks for masquerade (kube-proxy's).
const MASQUERADE_MARK: &str = "0x4000";

/// The whole `nft -f` script for `plans` (pure).
pub fn ruleset(plans: &[ServicePortPlan], cluster_cidr: &Ipv4Cidr) -> String {
    let mut service_ips = Vec::new();
    let mut node_ports = Vec::new();
    let mut no_endpoint_ips = Vec::new();
    let mut no_endpoint_ports = Vec::new();
    let mut chains = String::new();
    for (i, plan) in plans.iter().enumerate() {
        let proto = plan.protocol.nft();
        let internal = format!("svc-{i}");
        let external = format!("ext-{i}");
        if let Some(ip) = plan.cluster_ip {
            let key = format!("{ip} . {proto} . {}", plan.port);
            if plan.internal.is_empty() {
                no_endpoint_ips.push(format!("{key} : goto reject-chain"));
            } else {
                service_ips.push(format!("{key} : goto {internal}"));
                let masquerade = format!("ip saddr != {cluster_cidr} jump mark-for-masquerade");
                write_service_chain(&mut chains, &internal, i, "int", plan, &plan.internal, Some(&masquerade));
            }
        }
        let has_external = !plan.external_ips.is_empty() || plan.node_port.is_some();
        if has_external && !plan.external.is_empty() {
            let masquerade = (!plan.external_local).then_some("jump mark-for-masquerade");
            write_service_chain(&mut chains, &external, i, "ext", plan, &plan.external, masquerade);
        }
        for ip in &plan.external_ips {
            let key = format!("{ip} . {proto} . {}", plan.port);
            match plan.external.is_empty() {
                true => no_endpoint_ips.push(format!("{key} : goto reject-chain")),
                false => service_ips.push(format!("{key} : goto {external}")),
            }
        }
        if let Some(node_port) = plan.node_port {
            let key = format!("{proto} . {node_port}");
            match plan.external.is_empty() {
                true => no_endpoint_ports.push(format!("{key} : goto reject-chain")),
                false => node_ports.push(format!("{key} : goto {external}")),
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{");
    write_map(&mut out, "service-ips", "ipv4_addr . inet_proto . inet_service", &service_ips);
    write_map(&mut out, "service-nodeports", "inet_proto . inet_service", &node_ports);
    write_map(&mut out, "no-endpoint-services", "ipv4_addr . inet_proto . inet_service", &no_endpoint_ips);
    write_map(&mut out, "no-endpoint-nodeports", "inet_proto . inet_service", &no_endpoint_ports);
    // The node's own addresses, not loopback (as kube-proxy's default nodePortAddresses).
    let node_address = "fib daddr type local ip daddr != 127.0.0.0/8";
    let _ = write!(
        out,
        "\tchain nat-prerouting {{\n\t\ttype nat hook prerouting priority -100; policy accept;\n\t\tjump services\n\t}}\n\
         \tchain nat-output {{\n\t\ttype nat hook output priority -100; policy accept;\n\t\tjump services\n\t}}\n\
         \tchain nat-postrouting {{\n\t\ttype nat hook postrouting priority 100; policy accept;\n\t\tjump masquerading\n\t}}\n\
         \tchain filter-input {{\n\t\ttype filter hook input priority -110; policy accept;\n\t\tct state new jump endpoints-check\n\t}}\n\
         \tchain filter-forward {{\n\t\ttype filter hook forward priority -110; policy accept;\n\t\tct state new jump endpoints-check\n\t}}\n\
         \tchain filter-output {{\n\t\ttype filter hook output priority -110; policy accept;\n\t\tct state new jump endpoints-check\n\t}}\n\
         \tchain endpoints-check {{\n\t\tip daddr . meta l4proto . th dport vmap @no-endpoint-services\n\
         \t\t{node_address} meta l4proto . th dport vmap @no-endpoint-nodeports\n\t}}\n\
         \tchain reject-chain {{\n\t\tmeta l4proto tcp reject with tcp reset\n\t\treject\n\t}}\n\
         \tchain services {{\n\t\tip daddr . meta l4proto . th dport vmap @service-ips\n\
         \t\t{node_address} meta l4proto . th dport vmap @service-nodeports\n\t}}\n\
         \tchain mark-for-masquerade {{\n\t\tmeta mark set meta mark | {MASQUERADE_MARK}\n\t}}\n\
         \tchain masquerading {{\n\t\tmeta mark & {MASQUERADE_MARK} == 0 return\n\
         \t\tmeta mark set meta mark ^ {MASQUERADE_MARK}\n\t\tmasquerade fully-random\n\t}}\n"
    );
    out.push_str(&chains);
    out.push_str("}\n");
    out
}

fn write_map(out: &mut String, name: &str, key: &str, elements: &[String]) {
    let _ = write!(out, "\tmap {name} {{\n\t\ttype {key} : verdict\n");
    if !elements.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
    }
    out.push_str("\t}\n");
}

/// A Service port's chain (`name`) over `targets`, with its endpoints' chains (and their
/// affinity sets). `kind` keeps the internal and external endpoint chains apart.
fn write_service_chain(
    out: &mut String,
    name: &str,
    index: usize,
    kind: &str,
    plan: &ServicePortPlan,
    targets: &[Target],
    masquerade: Option<&str>,
) {
    let endpoint = |j: usize| format!("ep-{index}-{kind}-{j}");
    let affinity = |j: usize| format!("aff-{index}-{kind}-{j}");
    let _ = write!(out, "\tchain {name} {{\n\t\tcomment \"{}\"\n", plan.id);
    if let Some(rule) = masquerade {
        let _ = writeln!(out, "\t\t{rule}");
    }
    if plan.affinity_seconds.is_some() {
        for j in 0..targets.len() {
            let _ = writeln!(out, "\t\tip saddr @{} goto {}", affinity(j), endpoint(j));
        }
    }
    let choices: Vec<String> = (0..targets.len()).map(|j| format!("{j} : goto {}", endpoint(j))).collect();
    let _ = write!(out, "\t\tnumgen random mod {} vmap {{ {} }}\n\t}}\n", targets.len(), choices.join(", "));
    for (j, t) in targets.iter().enumerate() {
        if let Some(seconds) = plan.affinity_seconds {
            let _ = writeln!(
                out,
                "\tset {} {{\n\t\ttype ipv4_addr\n\t\tflags dynamic,timeout\n\t\ttimeout {seconds}s\n\t}}",
                affinity(j)
            );
        }
        let _ = write!(out, "\tchain {} {{\n\t\tip saddr {} jump mark-for-masquerade\n", endpoint(j), t.ip);
        if plan.affinity_seconds.is_some() {
            let _ = writeln!(out, "\t\tupdate @{} {{ ip saddr }}", affinity(j));
        }
        let _ = write!(out, "\t\tmeta l4proto {} dnat to {}:{}\n\t}}\n", plan.protocol.nft(), t.ip, t.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::model::Protocol;
    use std::net::Ipv4Addr;

    fn plan(internal: Vec<Target>, node_port: Option<u16>) -> ServicePortPlan {
        ServicePortPlan {
            id: "default/web:http".into(),
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

    #[test]
    fn a_service_maps_to_a_random_endpoint_and_its_node_port_too() {
        let rules = ruleset(
            &[plan(vec![target([10, 244, 0, 2]), target([10, 244, 1, 2])], Some(30080))],
            &"10.244.0.0/16".parse().unwrap(),
        );
        assert!(rules.starts_with("table ip berth-proxy\ndelete table ip berth-proxy\n"), "replaced whole");
        assert!(rules.contains("elements = { 10.96.0.10 . tcp . 80 : goto svc-0 }"), "{rules}");
        assert!(rules.contains("elements = { tcp . 30080 : goto ext-0 }"), "{rules}");
        assert!(rules.contains("ip saddr != 10.244.0.0/16 jump mark-for-masquerade"), "{rules}");
        assert!(rules.contains("numgen random mod 2 vmap { 0 : goto ep-0-int-0, 1 : goto ep-0-int-1 }"), "{rules}");
        assert!(rules.contains("\tchain ep-0-int-1 {\n\t\tip saddr 10.244.1.2 jump mark-for-masquerade\n\t\tmeta l4proto tcp dnat to 10.244.1.2:8080\n"), "{rules}");
    }

    /// The real `nft` checks the script (`-c`: nothing is applied), where it can run.
    #[test]
    fn the_real_nft_accepts_the_ruleset() {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if !root || std::process::Command::new("nft").arg("--version").output().is_err() {
            eprintln!("skipping: needs root and nft");
            return;
        }
        let mut sticky = plan(vec![target([10, 244, 0, 2]), target([10, 244, 1, 2])], Some(30080));
        sticky.affinity_seconds = Some(60);
        sticky.external_ips = vec![Ipv4Addr::new(192, 0, 2, 9)];
        let mut empty = plan(vec![], Some(30081));
        empty.id = "default/empty:80".into();
        empty.cluster_ip = Some(Ipv4Addr::new(10, 96, 0, 11));
        let rules = ruleset(&[sticky, empty], &"10.244.0.0/16".parse().unwrap());
        use std::io::Write;
        let mut child = std::process::Command::new("nft")
            .args(["-c", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}\n{rules}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn no_endpoints_is_a_reject_and_affinity_remembers_clients() {
        let rules = ruleset(&[plan(vec![], Some(30081))], &"10.244.0.0/16".parse().unwrap());
        assert!(rules.contains("10.96.0.10 . tcp . 80 : goto reject-chain"), "{rules}");
        assert!(rules.contains("tcp . 30081 : goto reject-chain"), "{rules}");
        assert!(!rules.contains("chain svc-0"), "{rules}");
        let mut sticky = plan(vec![target([10, 244, 0, 2])], None);
        sticky.affinity_seconds = Some(60);
        let rules = ruleset(&[sticky], &"10.244.0.0/16".parse().unwrap());
        assert!(rules.contains("ip saddr @aff-0-int-0 goto ep-0-int-0"), "{rules}");
        assert!(rules.contains("timeout 60s"), "{rules}");
        assert!(rules.contains("update @aff-0-int-0 { ip saddr }"), "{rules}");
    }
}
