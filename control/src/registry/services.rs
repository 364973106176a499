//! Cluster IPs and node ports of Services.
//!
//! Each allocated value is a key in the store (`/registry/ipallocations/10.96.12.7`,
//! `/registry/nodeports/TCP/30080`) written in the same transaction as the Service, with a
//! key-absent guard: two Services can never hold the same value, even when two API
//! servers allocate at once, and a deleted Service releases its values atomically.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use berth_store::Store;
use rand::Rng;
use serde_json::{json, Value};

use super::storage;
use crate::resource::ApiError;
use crate::resource::ResourceInfo;

/// The service CIDR (kube-apiserver's default 10.96.0.0/12); .1 is kept for the
/// `kubernetes` Service as Kubernetes does.
const SERVICE_CIDR: (u32, u32) = (0x0a60_0000, 12);
pub const NODE_PORT_RANGE: (u16, u16) = (30000, 32767);

/// The allocation keys a write adds and releases, and the values the client chose.
#[derive(Debug, Default)]
pub struct Allocations {
    pub added: Vec<String>,
    pub released: Vec<String>,
    /// (field, value, key) of values the client asked for.
    chosen: Vec<(String, String, String)>,
}

impl Allocations {
    /// After a failed write: the first client-chosen value that another object holds.
    pub async fn user_chosen_taken(&self, store: &Store) -> Result<Option<(String, String)>, ApiError> {
        for (field, value, key) in &self.chosen {
            if self.added.contains(key) && storage::exists(store, key).await? {
                return Ok(Some((field.clone(), value.clone())));
            }
        }
        Ok(None)
    }
}

fn ip_key(ip: &str) -> String {
    format!("/registry/ipallocations/{ip}")
}

fn port_key(protocol: &str, port: i64) -> String {
    format!("/registry/nodeports/{protocol}/{port}")
}

fn in_cidr(ip: Ipv4Addr) -> bool {
    let (base, bits) = SERVICE_CIDR;
    (u32::from(ip) >> (32 - bits)) == (base >> (32 - bits))
}

fn random_ip() -> String {
    let (base, bits) = SERVICE_CIDR;
    let size = 1u32 << (32 - bits);
    // Kubernetes' static subrange: the lowest min(max(16, size/16), 256) addresses are left
    // to Services that name their IP (10.96.0.1 `kubernetes`, 10.96.0.10 `kube-dns`);
    // random ones come from above it (the range also skips the broadcast address).
    let static_band = (size / 16).clamp(16, 256);
    let offset = rand::rng().random_range(static_band..size - 1);
    Ipv4Addr::from(base + offset).to_string()
}

fn wants_cluster_ip(svc: &Value) -> bool {
    svc["spec"]["type"].as_str() != Some("ExternalName") && svc["spec"]["clusterIP"].as_str() != Some("None")
}

fn wants_node_ports(svc: &Value) -> bool {
    matches!(svc["spec"]["type"].as_str(), Some("NodePort" | "LoadBalancer"))
}

/// Every allocation key `obj` holds (for deletes).
pub fn allocation_keys(info: &ResourceInfo, obj: &Value) -> Vec<String> {
    keys_of(info, obj).into_iter().collect()
}

/// Whether objects of `info` hold cluster IPs and node ports (Services alone): the one place
/// the registry asks, so the rest of it never names the kind.
pub fn allocates(info: &ResourceInfo) -> bool {
    info.kind == "Service"
}

fn keys_of(info: &ResourceInfo, obj: &Value) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    if !allocates(info) {
        return keys;
    }
    if let Some(ip) = obj["spec"]["clusterIP"].as_str().filter(|ip| !ip.is_empty() && *ip != "None") {
        keys.insert(ip_key(ip));
    }
    for p in obj["spec"]["ports"].as_array().into_iter().flatten() {
        if let Some(n) = p["nodePort"].as_i64().filter(|n| *n > 0) {
            keys.insert(port_key(p["protocol"].as_str().unwrap_or("TCP"), n));
        }
    }
    keys
}

/// Fills a Service's cluster IP and node ports (kept from `old` on update, chosen at random
/// when absent) and says which keys to add and release. Err: (field, value, why).
pub fn allocate(
    info: &ResourceInfo,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<Allocations, (String, String, String)> {
    let mut out = Allocations::default();
    if !allocates(info) || !obj["spec"].is_object() {
        return Ok(out);
    }
    let old_keys = old.map(|o| keys_of(info, o)).unwrap_or_default();
    if wants_cluster_ip(obj) {
        let requested = obj["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
        let ip = if requested.is_empty() {
            old.and_then(|o| o["spec"]["clusterIP"].as_str())
                .filter(|ip| !ip.is_empty())
                .map(String::from)
                .unwrap_or_else(random_ip)
        } else {
            let parsed: Ipv4Addr = requested.parse().map_err(|_| {
                ("spec.clusterIP".to_string(), requested.clone(), "must be a valid IP address".to_string())
            })?;
            if !in_cidr(parsed) {
                return Err((
                    "spec.clusterIPs".into(),
                    requested.clone(),
                    "failed to allocate IP: the provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12".into(),
                ));
            }
            if !old_keys.contains(&ip_key(&requested)) {
                out.chosen.push(("spec.clusterIPs".into(), requested.clone(), ip_key(&requested)));
            }
            requested
        };
        obj["spec"]["clusterIP"] = json!(ip);
        obj["spec"]["clusterIPs"] = json!([ip]);
    } else if obj["spec"]["clusterIP"].as_str() == Some("None") {
        obj["spec"]["clusterIPs"] = json!(["None"]);
    }
    if wants_node_ports(obj) {
        let old_ports: Vec<Value> = old.and_then(|o| o["spec"]["ports"].as_array().cloned()).unwrap_or_default();
        if let Some(ports) = obj["spec"]["ports"].as_array_mut() {
            for (i, p) in ports.iter_mut().enumerate() {
                let protocol = p["protocol"].as_str().unwrap_or("TCP").to_string();
                match p["nodePort"].as_i64().filter(|n| *n != 0) {
                    Some(n) => {
                        if !(NODE_PORT_RANGE.0 as i64..=NODE_PORT_RANGE.1 as i64).contains(&n) {
                            return Err((
                                format!("spec.ports[{i}].nodePort"),
                                n.to_string(),
                                "provided port is not in the valid range. The range of valid ports is 30000-32767"
                                    .into(),
                            ));
                        }
                        if !old_keys.contains(&port_key(&protocol, n)) {
                            out.chosen.push((
                                format!("spec.ports[{i}].nodePort"),
                                n.to_string(),
                                port_key(&protocol, n),
                            ));
                        }
                    }
                    None => {
                        let kept = old_ports
                            .iter()
                            .find(|o| o["port"] == p["port"] && o["protocol"].as_str().unwrap_or("TCP") == protocol)
                            .and_then(|o| o["nodePort"].as_i64());
                        let n = kept
                            .unwrap_or_else(|| rand::rng().random_range(NODE_PORT_RANGE.0..=NODE_PORT_RANGE.1) as i64);
                        p["nodePort"] = json!(n);
                    }
                }
            }
        }
    } else if let Some(ports) = obj["spec"]["ports"].as_array_mut() {
        for p in ports {
            if let Some(m) = p.as_object_mut() {
                m.remove("nodePort");
            }
        }
    }
    let new_keys = keys_of(info, obj);
    out.added = new_keys.difference(&old_keys).cloned().collect();
    out.released = old_keys.difference(&new_keys).cloned().collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource;

    #[test]
    fn services_get_an_ip_and_node_ports_once() {
        let svc = resource::find("", "v1", "services").unwrap();
        let mut s = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}});
        let a = allocate(svc, &mut s, None).unwrap();
        let ip: Ipv4Addr = s["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        assert!(in_cidr(ip));
        assert_eq!(a.added.len(), 2);
        let port = s["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
        assert!((30000..=32767).contains(&port));
        // An update without the values keeps them.
        let old = s.clone();
        let mut new = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}});
        let b = allocate(svc, &mut new, Some(&old)).unwrap();
        assert!(b.added.is_empty() && b.released.is_empty());
        assert_eq!(new["spec"]["clusterIP"], old["spec"]["clusterIP"]);
        // Back to ClusterIP releases the node port.
        let mut cip =
            json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP", "nodePort": port}]}});
        let c = allocate(svc, &mut cip, Some(&old)).unwrap();
        assert_eq!(c.released, vec![port_key("TCP", port)]);
        let mut bad = json!({"spec": {"clusterIP": "192.168.0.1", "ports": []}});
        assert!(allocate(svc, &mut bad, None).is_err());
        let mut headless = json!({"spec": {"clusterIP": "None", "ports": []}});
        assert!(allocate(svc, &mut headless, None).unwrap().added.is_empty());
    }
}
