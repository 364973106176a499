//! The cluster's DNS zone (`cluster.local` by default), decided purely from Services and
//! EndpointSlices, with the names CoreDNS's `kubernetes` plugin serves (the Kubernetes DNS
//! specification):
//! * `svc.ns.svc.cluster.local` — A: the ClusterIP; headless Services: the ready
//!   endpoints' addresses; ExternalName Services: a CNAME to `spec.externalName`;
//! * `host.svc.ns.svc.cluster.local` — A for each headless endpoint, `host` being its
//!   `hostname` (StatefulSet pods: `web-0`) or its dashed address (`10-244-1-5`);
//! * `_port._proto.svc.ns.svc.cluster.local` — SRV for each named port (headless: one
//!   per endpoint, naming the endpoint's host name);
//! * `a-b-c-d.ns.pod.cluster.local` — A `a.b.c.d` (CoreDNS's `pods insecure`);
//! * PTR for ClusterIPs and headless endpoints.
//!
//! Names within the zone that nothing defines are NXDOMAIN; names that exist with other
//! types, or only as parents of other names, have no data — both with the zone's SOA, so
//! resolvers cache the negative answer for [`TTL`] seconds.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::str::FromStr;

use hickory_proto::rr::rdata::{A, CNAME, PTR, SOA, SRV};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::proxy::model::SERVICE_NAME_LABEL;

/// The TTL of every record (CoreDNS's `kubernetes` plugin default), also the SOA's
/// negative-caching time.
pub const TTL: u32 = 5;

/// What the zone says about one name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The records (for an alias: its CNAME, which the server follows).
    Records(Vec<Record>),
    /// The name exists without records of this type.
    NoData,
    /// No such name.
    NxDomain,
}

/// One snapshot of the zone.
#[derive(Debug, Clone)]
pub struct Zone {
    domain: LowerName,
    records: HashMap<LowerName, Vec<Record>>,
    /// Names that exist only as parents of other names (empty non-terminals).
    parents: HashSet<LowerName>,
    /// PTR records, by reverse name.
    reverse: HashMap<LowerName, Vec<Record>>,
    soa: Record,
}

/// `label.parent` (labels come from the API, already validated as DNS labels; one that is
/// not gives no name).
fn child(label: &str, parent: &Name) -> Option<Name> {
    Name::from_ascii(label).ok()?.append_domain(parent).ok()
}

/// `1.2.3.4` → `1-2-3-4`, the host name of an endpoint without one.
fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

impl Zone {
    /// An empty zone for `domain` (such as `cluster.local`).
    pub fn empty(domain: &Name) -> Zone {
        let mut domain = domain.clone();
        domain.set_fqdn(true);
        let ns = child("ns.dns", &domain).unwrap_or_else(|| domain.clone());
        let mailbox = child("hostmaster", &domain).unwrap_or_else(|| domain.clone());
        // Serial, refresh, retry, expire, minimum: as CoreDNS's kubernetes plugin.
        let soa = SOA::new(ns, mailbox, 1, 7200, 1800, 86400, TTL);
        Zone {
            domain: LowerName::new(&domain),
            records: HashMap::new(),
            parents: HashSet::new(),
            reverse: HashMap::new(),
            soa: Record::from_rdata(domain, TTL, RData::SOA(soa)),
        }
    }

    /// The zone of `services` and `slices`.
    pub fn build(domain: &Name, services: &[&Service], slices: &[&EndpointSlice]) -> Zone {
        let mut zone = Zone::empty(domain);
        let mut slices_of: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            let ns = slice.metadata.namespace.as_deref().unwrap_or_default();
            if let Some(svc) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) {
                slices_of.entry((ns, svc.as_str())).or_default().push(slice);
            }
        }
        for svc in services {
            let (Some(name), Some(ns)) = (svc.metadata.name.as_deref(), svc.metadata.namespace.as_deref()) else {
                continue;
            };
            let Some(base) = child(&format!("{name}.{ns}.svc"), &Name::from(zone.domain.clone())) else { continue };
            let slices = slices_of.get(&(ns, name)).map(Vec::as_slice).unwrap_or_default();
            zone.add_service(&base, svc, slices);
        }
        zone
    }

    fn add(&mut self, name: Name, rdata: RData) {
        self.add_parents_of(&name);
        let record = Record::from_rdata(name.clone(), TTL, rdata);
        let records = self.records.entry(LowerName::new(&name)).or_default();
        if !records.contains(&record) {
            records.push(record);
        }
    }

    fn add_ptr(&mut self, ip: Ipv4Addr, target: &Name) {
        let reverse = Name::from(ip);
        let record = Record::from_rdata(reverse.clone(), TTL, RData::PTR(PTR(target.clone())));
        let records = self.reverse.entry(LowerName::new(&reverse)).or_default();
        if !records.contains(&record) {
            records.push(record);
        }
    }

    fn add_service(&mut self, base: &Name, svc: &Service, slices: &[&EndpointSlice]) {
        let Some(spec) = svc.spec.as_ref() else { return };
        if spec.type_.as_deref() == Some("ExternalName") {
            if let Some(target) = spec.external_name.as_deref().and_then(|t| Name::from_str(t).ok()) {
                let mut target = target;
                target.set_fqdn(true);
                self.add(base.clone(), RData::CNAME(CNAME(target)));
            }
            return;
        }
        // (name, protocol, Service port) of each named port.
        let named_ports: Vec<(&str, String, i32)> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let name = p.name.as_deref().filter(|n| !n.is_empty())?;
                Some((name, p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(), p.port))
            })
            .collect();
        match spec.cluster_ip.as_deref() {
            Some("None") => {
                // Headless: the endpoints themselves.
                let mut hosts: Vec<(Name, Ipv4Addr, HashMap<&str, u16>)> = Vec::new();
                for slice in slices.iter().filter(|s| s.address_type == "IPv4") {
                    let ports: HashMap<&str, u16> = slice
                        .ports
                        .iter()
                        .flatten()
                        .filter_map(|p| Some((p.name.as_deref().unwrap_or_default(), u16::try_from(p.port?).ok()?)))
                        .collect();
                    for endpoint in &slice.endpoints {
                        let ready = endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                        if !ready {
                            continue;
                        }
                        for ip in endpoint.addresses.iter().filter_map(|a| a.parse::<Ipv4Addr>().ok()) {
                            let label = endpoint.hostname.clone().unwrap_or_else(|| dashed(ip));
                            let Some(host) = child(&label, base) else { continue };
                            hosts.push((host, ip, ports.clone()));
                        }
                    }
                }
                let weight = u16::try_from(100 / hosts.len().max(1)).unwrap_or(100);
                for (host, ip, ports) in &hosts {
                    self.add(base.clone(), RData::A(A(*ip)));
                    self.add(host.clone(), RData::A(A(*ip)));
                    self.add_ptr(*ip, host);
                    for (port_name, proto, _) in &named_ports {
                        let (Some(srv), Some(port)) =
                            (child(&format!("_{port_name}._{proto}"), base), ports.get(port_name))
                        else {
                            continue;
                        };
                        self.add(srv, RData::SRV(SRV::new(0, weight, *port, host.clone())));
                    }
                }
                if hosts.is_empty() {
                    // A headless Service without ready endpoints exists, with no address.
                    self.parents.insert(LowerName::new(base));
                    self.add_parents_of(base);
                }
            }
            Some(ip) => {
                let Ok(ip) = ip.parse::<Ipv4Addr>() else { return };
                self.add(base.clone(), RData::A(A(ip)));
                self.add_ptr(ip, base);
                for (port_name, proto, port) in &named_ports {
                    let Some(srv) = child(&format!("_{port_name}._{proto}"), base) else { continue };
                    let Ok(number) = u16::try_from(*port) else { continue };
                    self.add(srv, RData::SRV(SRV::new(0, 100, number, base.clone())));
                }
            }
            None => {}
        }
    }

    fn add_parents_of(&mut self, name: &Name) {
        let mut parent = name.base_name();
        while self.domain.zone_of(&LowerName::new(&parent)) {
            let done = LowerName::new(&parent) == self.domain;
            self.parents.insert(LowerName::new(&parent));
            if done || parent.num_labels() == 0 {
                break;
            }
            parent = parent.base_name();
        }
    }

    /// The zone's SOA record (the authority of negative answers).
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// Whether `name` belongs to the cluster domain.
    pub fn is_within(&self, name: &LowerName) -> bool {
        self.domain.zone_of(name)
    }

    /// The answer for `name` and `rtype`, or None when the name is not the zone's (another
    /// domain, or the reverse name of an address the zone does not name).
    pub fn lookup(&self, name: &LowerName, rtype: RecordType) -> Option<Answer> {
        if !self.is_within(name) {
            return self.reverse.get(name).map(|records| match rtype {
                RecordType::PTR | RecordType::ANY => Answer::Records(records.clone()),
                _ => Answer::NoData,
            });
        }
        if *name == self.domain && rtype == RecordType::SOA {
            return Some(Answer::Records(vec![self.soa.clone()]));
        }
        if let Some(records) = self.records.get(name) {
            let alias: Vec<Record> = records.iter().filter(|r| r.record_type() == RecordType::CNAME).cloned().collect();
            if !alias.is_empty() && rtype != RecordType::CNAME {
                return Some(Answer::Records(alias));
            }
            let matching: Vec<Record> =
                records.iter().filter(|r| rtype == RecordType::ANY || r.record_type() == rtype).cloned().collect();
            return Some(if matching.is_empty() { Answer::NoData } else { Answer::Records(matching) });
        }
        if let Some(ip) = self.pod_address(name) {
            return Some(match rtype {
                RecordType::A | RecordType::ANY => {
                    Answer::Records(vec![Record::from_rdata(Name::from(name.clone()), TTL, RData::A(A(ip)))])
                }
                _ => Answer::NoData,
            });
        }
        if self.parents.contains(name) || *name == self.domain {
            return Some(Answer::NoData);
        }
        Some(Answer::NxDomain)
    }

    /// `a-b-c-d.ns.pod.<domain>` → a.b.c.d.
    fn pod_address(&self, name: &LowerName) -> Option<Ipv4Addr> {
        let name = Name::from(name.clone());
        let extra = name.num_labels().checked_sub(self.domain.num_labels())?;
        if extra != 3 {
            return None;
        }
        let labels: Vec<String> = name.iter().take(3).map(|l| String::from_utf8_lossy(l).into_owned()).collect();
        if labels[2] != "pod" {
            return None;
        }
        labels[0].replace('-', ".").parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn domain() -> Name {
        Name::from_ascii("cluster.local.").unwrap()
    }

    fn svc(value: serde_json::Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    fn slice(ns: &str, svc: &str, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{svc}-x"), "namespace": ns, "labels": {SERVICE_NAME_LABEL: svc}},
            "addressType": "IPv4",
            "ports": [{"name": "web", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    fn lookup(zone: &Zone, name: &str, rtype: RecordType) -> Option<Answer> {
        zone.lookup(&LowerName::from_str(name).unwrap(), rtype)
    }

    fn datas(answer: Option<Answer>) -> Vec<String> {
        match answer {
            Some(Answer::Records(r)) => r.iter().map(|r| r.data.to_string()).collect(),
            other => panic!("expected records, got {other:?}"),
        }
    }

    fn zone() -> Zone {
        let services = [
            svc(json!({"metadata": {"name": "web", "namespace": "default"},
                       "spec": {"clusterIP": "10.96.3.4", "ports": [{"name": "http", "port": 80}, {"port": 81}]}})),
            svc(json!({"metadata": {"name": "nginx", "namespace": "shop"},
                       "spec": {"clusterIP": "None", "ports": [{"name": "web", "port": 80}]}})),
            svc(json!({"metadata": {"name": "empty", "namespace": "shop"}, "spec": {"clusterIP": "None"}})),
            svc(json!({"metadata": {"name": "db", "namespace": "default"},
                       "spec": {"type": "ExternalName", "externalName": "db.example.com"}})),
        ];
        let slices = [slice(
            "shop",
            "nginx",
            json!([
                {"addresses": ["10.244.1.5"], "hostname": "web-0", "conditions": {"ready": true}},
                {"addresses": ["10.244.2.7"], "conditions": {"ready": true}},
                {"addresses": ["10.244.2.9"], "hostname": "web-2", "conditions": {"ready": false}},
            ]),
        )];
        let services: Vec<&Service> = services.iter().collect();
        let slices: Vec<&EndpointSlice> = slices.iter().collect();
        Zone::build(&domain(), &services, &slices)
    }

    #[test]
    fn a_service_resolves_to_its_cluster_ip_with_srv_for_named_ports_and_ptr() {
        let zone = zone();
        assert_eq!(datas(lookup(&zone, "web.default.svc.cluster.local.", RecordType::A)), vec!["10.96.3.4"]);
        assert_eq!(datas(lookup(&zone, "WEB.Default.svc.cluster.local.", RecordType::A)), vec!["10.96.3.4"]);
        assert_eq!(
            datas(lookup(&zone, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV)),
            vec!["0 100 80 web.default.svc.cluster.local."]
        );
        assert_eq!(
            datas(lookup(&zone, "4.3.96.10.in-addr.arpa.", RecordType::PTR)),
            vec!["web.default.svc.cluster.local."]
        );
        assert_eq!(lookup(&zone, "web.default.svc.cluster.local.", RecordType::AAAA), Some(Answer::NoData));
    }

    #[test]
    fn headless_services_answer_with_ready_endpoints_and_their_host_names() {
        let zone = zone();
        let mut all = datas(lookup(&zone, "nginx.shop.svc.cluster.local.", RecordType::A));
        all.sort();
        assert_eq!(all, vec!["10.244.1.5", "10.244.2.7"]);
        assert_eq!(datas(lookup(&zone, "web-0.nginx.shop.svc.cluster.local.", RecordType::A)), vec!["10.244.1.5"]);
        assert_eq!(datas(lookup(&zone, "10-244-2-7.nginx.shop.svc.cluster.local.", RecordType::A)), vec!["10.244.2.7"]);
        assert_eq!(lookup(&zone, "web-2.nginx.shop.svc.cluster.local.", RecordType::A), Some(Answer::NxDomain));
        let mut srv = datas(lookup(&zone, "_web._tcp.nginx.shop.svc.cluster.local.", RecordType::SRV));
        srv.sort();
        assert_eq!(
            srv,
            vec!["0 50 8080 10-244-2-7.nginx.shop.svc.cluster.local.", "0 50 8080 web-0.nginx.shop.svc.cluster.local."]
        );
        assert_eq!(
            datas(lookup(&zone, "5.1.244.10.in-addr.arpa.", RecordType::PTR)),
            vec!["web-0.nginx.shop.svc.cluster.local."]
        );
        // Without ready endpoints: the name exists, with no address.
        assert_eq!(lookup(&zone, "empty.shop.svc.cluster.local.", RecordType::A), Some(Answer::NoData));
    }

    #[test]
    fn external_names_are_aliases_and_pods_have_dashed_names() {
        let zone = zone();
        assert_eq!(datas(lookup(&zone, "db.default.svc.cluster.local.", RecordType::A)), vec!["db.example.com."]);
        assert_eq!(datas(lookup(&zone, "1-2-3-4.default.pod.cluster.local.", RecordType::A)), vec!["1.2.3.4"]);
        assert_eq!(lookup(&zone, "1-2-3.default.pod.cluster.local.", RecordType::A), Some(Answer::NxDomain));
    }

    #[test]
    fn unknown_names_in_the_domain_are_nxdomain_parents_are_nodata_and_others_not_ours() {
        let zone = zone();
        for garbage in [
            "nope.default.svc.cluster.local.",
            "web.default.svc.cluster.local.default.svc.cluster.local.",
            "x.y.z.cluster.local.",
        ] {
            assert_eq!(lookup(&zone, garbage, RecordType::A), Some(Answer::NxDomain), "{garbage}");
        }
        for parent in ["default.svc.cluster.local.", "svc.cluster.local.", "cluster.local."] {
            assert_eq!(lookup(&zone, parent, RecordType::A), Some(Answer::NoData), "{parent}");
        }
        assert_eq!(datas(lookup(&zone, "cluster.local.", RecordType::SOA)).len(), 1);
        assert_eq!(lookup(&zone, "example.com.", RecordType::A), None);
        assert_eq!(lookup(&zone, "9.9.9.9.in-addr.arpa.", RecordType::PTR), None);
    }
}
