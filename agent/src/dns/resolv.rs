//! A pod's resolv.conf, decided as the kubelet decides it (pure): `dnsPolicy`
//! (`ClusterFirst` — the default —, `ClusterFirstWithHostNet`, `Default`, `None`), the
//! node's `--cluster-dns`/`--cluster-domain`, the host's resolv.conf (`--resolv-conf`) and
//! the pod's `dnsConfig`, with the kubelet's limits (3 nameservers, 32 search domains).

use k8s_openapi::api::core::v1::Pod;

/// At most this many nameservers (glibc's MAXNS); the kubelet drops the rest.
pub const MAX_NAMESERVERS: usize = 3;
/// At most this many search domains (the kubelet's limit).
pub const MAX_SEARCHES: usize = 32;

/// The parts of a resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses resolv.conf text: `nameserver`, `search`/`domain` and `options` lines
    /// (comments and anything else ignored, a later `search` replaces an earlier one).
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => conf.nameservers.extend(words.next().map(String::from)),
                Some("search") | Some("domain") => conf.searches = words.map(String::from).collect(),
                Some("options") => conf.options.extend(words.map(String::from)),
                _ => {}
            }
        }
        conf
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for ns in &self.nameservers {
            text.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.searches.is_empty() {
            text.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        if !self.options.is_empty() {
            text.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        text
    }
}

/// The node's DNS settings for its pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodDnsSettings {
    /// kubelet's `--cluster-dns` (empty: ClusterFirst pods get the host's configuration).
    pub cluster_dns: Vec<String>,
    /// kubelet's `--cluster-domain`.
    pub cluster_domain: String,
    /// The host's resolv.conf (`--resolv-conf`).
    pub host: ResolvConf,
}

/// The resolv.conf of `pod`.
pub fn pod_resolv_conf(pod: &Pod, settings: &PodDnsSettings) -> ResolvConf {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network == Some(true);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    let mut conf = match policy {
        "None" => ResolvConf::default(),
        _ if cluster && !settings.cluster_dns.is_empty() => {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let domain = settings.cluster_domain.trim_end_matches('.');
            let mut searches = vec![format!("{ns}.svc.{domain}"), format!("svc.{domain}"), domain.to_string()];
            searches.extend(settings.host.searches.iter().cloned());
            ResolvConf { nameservers: settings.cluster_dns.clone(), searches, options: vec!["ndots:5".into()] }
        }
        _ => settings.host.clone(),
    };
    if let Some(extra) = spec.dns_config.as_ref() {
        conf.nameservers.extend(extra.nameservers.iter().flatten().cloned());
        conf.searches.extend(extra.searches.iter().flatten().cloned());
        for option in extra.options.iter().flatten() {
            let rendered = match option.value.as_deref() {
                Some(v) => format!("{}:{v}", option.name.as_deref().unwrap_or_default()),
                None => option.name.clone().unwrap_or_default(),
            };
            let name = rendered.split(':').next().unwrap_or_default().to_string();
            // A pod option overrides the one of the same name.
            conf.options.retain(|o| o.split(':').next() != Some(name.as_str()));
            conf.options.push(rendered);
        }
    }
    dedup(&mut conf.nameservers);
    dedup(&mut conf.searches);
    conf.nameservers.truncate(MAX_NAMESERVERS);
    conf.searches.truncate(MAX_SEARCHES);
    conf
}

/// Removes later duplicates, keeping the order.
fn dedup(items: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    items.retain(|i| seen.insert(i.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> PodDnsSettings {
        PodDnsSettings {
            cluster_dns: vec!["10.96.0.10".into()],
            cluster_domain: "cluster.local".into(),
            host: ResolvConf::parse("# host\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0\n"),
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": spec})).unwrap()
    }

    #[test]
    fn cluster_first_pods_use_cluster_dns_with_the_kubelet_search_path() {
        let conf = pod_resolv_conf(&pod(json!({"containers": []})), &settings());
        assert_eq!(
            conf.render(),
            "nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local corp.example\noptions ndots:5\n"
        );
    }

    #[test]
    fn host_network_and_default_policy_use_the_host_configuration() {
        let host = pod(json!({"containers": [], "hostNetwork": true}));
        assert_eq!(pod_resolv_conf(&host, &settings()), settings().host);
        let with_cluster = pod(json!({"containers": [], "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}));
        assert_eq!(pod_resolv_conf(&with_cluster, &settings()).nameservers, vec!["10.96.0.10"]);
        let default = pod(json!({"containers": [], "dnsPolicy": "Default"}));
        assert_eq!(pod_resolv_conf(&default, &settings()).nameservers, vec!["192.0.2.53"]);
        // Without --cluster-dns, ClusterFirst falls back to the host's.
        let no_cluster = PodDnsSettings { cluster_dns: vec![], ..settings() };
        assert_eq!(pod_resolv_conf(&pod(json!({"containers": []})), &no_cluster), settings().host);
    }

    #[test]
    fn dns_config_extends_and_none_starts_empty() {
        let p = pod(json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"],
            "searches": ["ns1.svc.cluster-domain.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}));
        let conf = pod_resolv_conf(&p, &settings());
        assert_eq!(conf.nameservers, vec!["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
        assert_eq!(conf.searches, vec!["ns1.svc.cluster-domain.example"]);
        assert_eq!(conf.options, vec!["ndots:2", "edns0"]);
        let overriding = pod(json!({"containers": [], "dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}}));
        assert_eq!(pod_resolv_conf(&overriding, &settings()).options, vec!["ndots:1"]);
    }
}
