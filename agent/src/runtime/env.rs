//! A container's environment as the kubelet builds it: the Service variables first
//! ([`service_env`], `enableServiceLinks`), then `envFrom` sources, then `env` entries (later
//! wins), with `valueFrom` read from ConfigMaps, Secrets and the pod's own fields, and
//! `$(VAR)` references to earlier variables expanded.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::Api;

use crate::node::ApiAccess;

/// The environment of `container`, or the `CreateContainerConfigError` message.
/// `node_ip` is the pod's hostIP and podIP (the pod's status may not carry them yet).
pub async fn resolve(
    api: &ApiAccess,
    pod: &Pod,
    container: &Container,
    node_ip: &str,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut sources = Sources { api, ns, config_maps: BTreeMap::new(), secrets: BTreeMap::new() };
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        env.retain(|(name, _)| *name != k);
        env.push((k, v));
    };
    if let Some(services) = &api.services {
        // The kubelet refuses to start a container before the Services have been listed
        // once. An agent started while the API is down must still restart its crashed
        // containers, so after a short wait it starts them without Service variables.
        if tokio::time::timeout(SERVICES_SYNC_WAIT, services.wait_until_ready()).await.is_err() {
            tracing::warn!(pod = %pod.metadata.name.as_deref().unwrap_or_default(), container = %container.name,
                "services have not yet been read at least once; starting without Service environment variables");
        }
        let state = services.state();
        let services: Vec<&Service> = state.iter().map(|s| s.as_ref()).collect();
        let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
        for (k, v) in service_env(&services, ns, links) {
            set(&mut env, k, v);
        }
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match sources.config_map(&r.name).await? {
                Some(data) => data.into_iter().for_each(|(k, v)| set(&mut env, format!("{prefix}{k}"), v)),
                None if r.optional == Some(true) => {}
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secret(&r.name).await? {
                Some(data) => data.into_iter().for_each(|(k, v)| set(&mut env, format!("{prefix}{k}"), v)),
                None if r.optional == Some(true) => {}
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(from) = &var.value_from {
            if let Some(r) = &from.config_map_key_ref {
                let data = sources.config_map(&r.name).await?;
                match data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => v.clone(),
                    None if r.optional == Some(true) => continue,
                    None if data.is_none() => return Err(format!("configmap \"{}\" not found", r.name)),
                    None => return Err(format!("couldn't find key {} in ConfigMap {ns}/{}", r.key, r.name)),
                }
            } else if let Some(r) = &from.secret_key_ref {
                let data = sources.secret(&r.name).await?;
                match data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => v.clone(),
                    None if r.optional == Some(true) => continue,
                    None if data.is_none() => return Err(format!("secret \"{}\" not found", r.name)),
                    None => return Err(format!("couldn't find key {} in Secret {ns}/{}", r.key, r.name)),
                }
            } else if let Some(r) = &from.field_ref {
                field(pod, &r.field_path, node_ip)?
            } else if let Some(r) = &from.resource_field_ref {
                let named = r.container_name.as_deref().filter(|n| !n.is_empty());
                let target = match named {
                    Some(n) => pod
                        .spec
                        .iter()
                        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
                        .find(|c| c.name == n)
                        .ok_or_else(|| format!("env {}: resourceFieldRef names no container {n:?}", var.name))?,
                    None => container,
                };
                resource_field(target, &r.resource, r.divisor.as_ref().map(|d| d.0.as_str()))?
            } else {
                return Err(format!("env {}: valueFrom names no source", var.name));
            }
        } else {
            expand(var.value.as_deref().unwrap_or_default(), &env)
        };
        set(&mut env, var.name.clone(), value);
    }
    Ok(env)
}

/// How long a container start waits for the first list of Services.
const SERVICES_SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The Service environment variables of a pod in `ns` (pure), as the kubelet's: for the
/// `kubernetes` Service in `default`, and with `enable_service_links` for every Service of
/// `ns` with a ClusterIP — `{NAME}_SERVICE_HOST`, `{NAME}_SERVICE_PORT`,
/// `{NAME}_SERVICE_PORT_{PORT}` per named port, and the Docker-link variables
/// `{NAME}_PORT`, `{NAME}_PORT_{port}_{PROTO}[_PROTO|_PORT|_ADDR]`. Sorted by name.
pub fn service_env(services: &[&Service], ns: &str, enable_service_links: bool) -> Vec<(String, String)> {
    let mut env = BTreeMap::new();
    let mut chosen: Vec<&Service> = services
        .iter()
        .copied()
        .filter(|s| {
            let (svc_ns, name) = (s.metadata.namespace.as_deref(), s.metadata.name.as_deref());
            (enable_service_links && svc_ns == Some(ns)) || (svc_ns == Some("default") && name == Some("kubernetes"))
        })
        .collect();
    // A Service of the pod's own namespace wins over `default/kubernetes` of the same name.
    chosen.sort_by_key(|s| s.metadata.namespace.as_deref() == Some(ns));
    for svc in chosen {
        let Some(spec) = svc.spec.as_ref() else { continue };
        let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != "None") else { continue };
        let ports = spec.ports.as_deref().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let name = svc.metadata.name.as_deref().unwrap_or_default().to_ascii_uppercase().replace('-', "_");
        env.insert(format!("{name}_SERVICE_HOST"), ip.to_string());
        env.insert(format!("{name}_SERVICE_PORT"), first.port.to_string());
        let first_proto = first.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
        env.insert(format!("{name}_PORT"), format!("{first_proto}://{ip}:{}", first.port));
        for port in ports {
            if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                let port_name = port_name.to_ascii_uppercase().replace('-', "_");
                env.insert(format!("{name}_SERVICE_PORT_{port_name}"), port.port.to_string());
            }
            let proto = port.protocol.as_deref().unwrap_or("TCP");
            let prefix = format!("{name}_PORT_{}_{}", port.port, proto.to_ascii_uppercase());
            let proto = proto.to_ascii_lowercase();
            env.insert(prefix.clone(), format!("{proto}://{ip}:{}", port.port));
            env.insert(format!("{prefix}_PROTO"), proto);
            env.insert(format!("{prefix}_PORT"), port.port.to_string());
            env.insert(format!("{prefix}_ADDR"), ip.to_string());
        }
    }
    env.into_iter().collect()
}

struct Sources<'a> {
    api: &'a ApiAccess,
    ns: &'a str,
    config_maps: BTreeMap<String, Option<BTreeMap<String, String>>>,
    secrets: BTreeMap<String, Option<BTreeMap<String, String>>>,
}

impl Sources<'_> {
    async fn config_map(&mut self, name: &str) -> Result<Option<BTreeMap<String, String>>, String> {
        if let Some(d) = self.config_maps.get(name) {
            return Ok(d.clone());
        }
        let api: Api<ConfigMap> = Api::namespaced(self.api.client.clone(), self.ns);
        let data = match api.get_opt(name).await {
            Ok(cm) => cm.map(|cm| cm.data.unwrap_or_default()),
            Err(e) => return Err(format!("reading configmap {name}: {e}")),
        };
        self.config_maps.insert(name.into(), data.clone());
        Ok(data)
    }

    async fn secret(&mut self, name: &str) -> Result<Option<BTreeMap<String, String>>, String> {
        if let Some(d) = self.secrets.get(name) {
            return Ok(d.clone());
        }
        let api: Api<Secret> = Api::namespaced(self.api.client.clone(), self.ns);
        let data = match api.get_opt(name).await {
            Ok(s) => s.map(|s| {
                let mut out: BTreeMap<String, String> = s.string_data.unwrap_or_default();
                for (k, v) in s.data.unwrap_or_default() {
                    out.insert(k, String::from_utf8_lossy(&v.0).into_owned());
                }
                out
            }),
            Err(e) => return Err(format!("reading secret {name}: {e}")),
        };
        self.secrets.insert(name.into(), data.clone());
        Ok(data)
    }
}

/// A `resourceFieldRef`'s value: the container's limit or request of `resource`
/// (`limits.cpu`, `requests.memory`, …) divided by `divisor` and rounded up, as the kubelet
/// does; an unset limit reads as the node's capacity.
pub fn resource_field(container: &Container, resource: &str, divisor: Option<&str>) -> Result<String, String> {
    use crate::runtime::cgroups::{cpu_millis, memory_bytes};
    let (list, name) = resource.split_once('.').ok_or_else(|| format!("unsupported resource {resource:?}"))?;
    let r = container.resources.as_ref();
    let map = match list {
        "limits" => r.and_then(|r| r.limits.as_ref()),
        "requests" => r.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("unsupported resource {resource:?}")),
    };
    let set = map.and_then(|m| m.get(name)).map(|q| q.0.clone());
    // Read the host only when a limit is unset.
    let node = || crate::host::capacity(None);
    let ceil_div = |v: u64, d: u64| if d == 0 { v } else { v.div_ceil(d) };
    match name {
        "cpu" => {
            let millis =
                set.or_else(|| (list == "limits").then(|| node().cpu)).and_then(|q| cpu_millis(&q)).unwrap_or(0);
            let divisor = divisor.and_then(cpu_millis).unwrap_or(1000);
            Ok(ceil_div(millis, divisor).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let bytes = set
                .or_else(|| (list == "limits" && name == "memory").then(|| node().memory))
                .and_then(|q| memory_bytes(&q))
                .unwrap_or(0);
            let divisor = divisor.and_then(memory_bytes).unwrap_or(1);
            Ok(ceil_div(bytes, divisor).to_string())
        }
        _ => Err(format!("unsupported resource {resource:?}")),
    }
}

/// A `fieldRef` path's value.
pub fn field(pod: &Pod, path: &str, node_ip: &str) -> Result<String, String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(|k| map.and_then(|m| m.get(k)).cloned().unwrap_or_default())
    };
    if let Some(v) = keyed("metadata.labels['", m.labels.as_ref()) {
        return Ok(v);
    }
    if let Some(v) = keyed("metadata.annotations['", m.annotations.as_ref()) {
        return Ok(v);
    }
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => status.and_then(|s| s.host_ip.clone()).unwrap_or_else(|| node_ip.into()),
        "status.podIP" | "status.podIPs" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_else(|| node_ip.into()),
        other => return Err(format!("unsupported fieldRef path {other:?}")),
    })
}

/// Expands `$(NAME)` from `env`; `$$` is a literal `$`; unknown references stay as written.
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(close) = after.strip_prefix('(').and_then(|a| a.find(')')) {
            let name = &after[1..close + 1];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&rest[i..i + close + 3]),
            }
            rest = &after[close + 2..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn expansion() {
        let env = vec![("A".to_string(), "1".to_string()), ("B".to_string(), "x".to_string())];
        assert_eq!(expand("$(A)-$(B)", &env), "1-x");
        assert_eq!(expand("$$(A) $(C) $ end", &env), "$(A) $(C) $ end");
        assert_eq!(expand("no refs", &env), "no refs");
    }

    #[test]
    fn field_refs() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec { node_name: Some("n1".into()), ..Default::default() }),
            status: Some(PodStatus { pod_ip: Some("10.0.0.1".into()), ..Default::default() }),
        };
        assert_eq!(field(&pod, "metadata.name", "").unwrap(), "p");
        assert_eq!(field(&pod, "metadata.labels['app']", "").unwrap(), "web");
        assert_eq!(field(&pod, "spec.nodeName", "").unwrap(), "n1");
        assert_eq!(field(&pod, "status.podIP", "").unwrap(), "10.0.0.1");
        assert!(field(&pod, "spec.bogus", "").is_err());
    }

    #[test]
    fn resource_field_refs_divide_and_round_up() {
        let c: Container = serde_json::from_value(serde_json::json!({"name": "c",
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"memory": "1Mi"}}}))
        .unwrap();
        assert_eq!(resource_field(&c, "limits.cpu", None).unwrap(), "1");
        assert_eq!(resource_field(&c, "limits.cpu", Some("1m")).unwrap(), "500");
        assert_eq!(resource_field(&c, "limits.memory", Some("1Mi")).unwrap(), "64");
        assert_eq!(resource_field(&c, "requests.memory", None).unwrap(), "1048576");
        assert!(resource_field(&c, "limits.gpu", None).is_err());
        let unlimited: Container = serde_json::from_value(serde_json::json!({"name": "c"})).unwrap();
        assert_ne!(resource_field(&unlimited, "limits.cpu", None).unwrap(), "0", "the node's capacity");
    }
}

#[cfg(test)]
mod service_env_tests {
    use super::*;
    use serde_json::json;

    fn svc(ns: &str, name: &str, spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}, "spec": spec})).unwrap()
    }

    #[test]
    fn services_of_the_namespace_and_the_api_give_kubelet_variables() {
        let services = [
            svc("default", "kubernetes", json!({"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]})),
            svc(
                "shop",
                "web-front",
                json!({"clusterIP": "10.96.7.8",
                "ports": [{"name": "http", "port": 80}, {"name": "dns-udp", "port": 53, "protocol": "UDP"}]}),
            ),
            svc("shop", "headless", json!({"clusterIP": "None", "ports": [{"port": 80}]})),
            svc("other", "elsewhere", json!({"clusterIP": "10.96.9.9", "ports": [{"port": 80}]})),
        ];
        let refs: Vec<&Service> = services.iter().collect();
        let env: BTreeMap<String, String> = service_env(&refs, "shop", true).into_iter().collect();
        assert_eq!(env["WEB_FRONT_SERVICE_HOST"], "10.96.7.8");
        assert_eq!(env["WEB_FRONT_SERVICE_PORT"], "80");
        assert_eq!(env["WEB_FRONT_SERVICE_PORT_HTTP"], "80");
        assert_eq!(env["WEB_FRONT_SERVICE_PORT_DNS_UDP"], "53");
        assert_eq!(env["WEB_FRONT_PORT"], "tcp://10.96.7.8:80");
        assert_eq!(env["WEB_FRONT_PORT_53_UDP"], "udp://10.96.7.8:53");
        assert_eq!(env["WEB_FRONT_PORT_53_UDP_PROTO"], "udp");
        assert_eq!(env["WEB_FRONT_PORT_80_TCP_ADDR"], "10.96.7.8");
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.96.0.1");
        assert_eq!(env["KUBERNETES_PORT_443_TCP_PORT"], "443");
        assert!(!env.keys().any(|k| k.starts_with("HEADLESS_") || k.starts_with("ELSEWHERE_")), "{env:?}");
        let off: Vec<String> = service_env(&refs, "shop", false).into_iter().map(|(k, _)| k).collect();
        assert!(off.iter().all(|k| k.starts_with("KUBERNETES_")), "{off:?}");
    }
}
