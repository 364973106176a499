//! Which backend an HTTP request goes to, decided purely from the Ingresses the node
//! serves, as the Ingress specification has it:
//! * hosts: a rule's exact host beats a wildcard one (`*.example.com` matches exactly one
//!   more label), which beats a rule without host;
//! * paths: within the best host tier that matches at all, the longest path wins, `Exact`
//!   before `Prefix` at equal length; `Prefix` matches whole path elements (`/foo` matches
//!   `/foo` and `/foo/bar`, not `/foobar`; `ImplementationSpecific` is treated as `Prefix`);
//! * no rule matches: the oldest Ingress's `defaultBackend`, else nothing (404).
//!
//! [`backend_targets`] turns a backend (a Service port by number or name) into the ready
//! endpoints, through the Service's EndpointSlices.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

use crate::proxy::model::{endpoints_of, Protocol, Target, SERVICE_NAME_LABEL};

/// A Service port an Ingress sends to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub namespace: String,
    pub service: String,
    pub port: PortRef,
}

/// A Service port by number or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRef {
    Number(i32),
    Name(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum HostTier {
    Exact = 0,
    Wildcard = 1,
    Any = 2,
}

#[derive(Debug, Clone)]
struct Route {
    host: Option<String>,
    path: String,
    exact: bool,
    backend: Backend,
}

/// The routes of every served Ingress.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    routes: Vec<Route>,
    default: Option<Backend>,
}

fn backend_of(namespace: &str, b: &IngressBackend) -> Option<Backend> {
    let svc = b.service.as_ref()?;
    let port = svc.port.as_ref()?;
    let port = match (port.number, port.name.as_deref()) {
        (Some(n), _) if n != 0 => PortRef::Number(n),
        (_, Some(name)) if !name.is_empty() => PortRef::Name(name.to_string()),
        _ => return None,
    };
    Some(Backend { namespace: namespace.to_string(), service: svc.name.clone(), port })
}

/// Whether `host` (lowercase, no port) is matched by a rule's `pattern`, and how well.
fn host_tier(pattern: Option<&str>, host: &str) -> Option<HostTier> {
    match pattern {
        None => Some(HostTier::Any),
        Some(p) => match p.strip_prefix("*.") {
            Some(suffix) => {
                let (first, rest) = host.split_once('.')?;
                (!first.is_empty() && rest.eq_ignore_ascii_case(suffix)).then_some(HostTier::Wildcard)
            }
            None => p.eq_ignore_ascii_case(host).then_some(HostTier::Exact),
        },
    }
}

/// Whether `path` matches a `Prefix` rule's `prefix`, element by element.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return true;
    }
    path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

impl Routes {
    /// The routes of `ingresses` (those the node serves), oldest Ingress first.
    pub fn of(ingresses: &[&Ingress]) -> Routes {
        let mut sorted: Vec<&&Ingress> = ingresses.iter().collect();
        sorted.sort_by(|a, b| {
            let created = |i: &Ingress| i.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(a).cmp(&created(b)).then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        let mut routes = Routes::default();
        for ingress in sorted {
            let ns = ingress.metadata.namespace.as_deref().unwrap_or("default");
            let Some(spec) = ingress.spec.as_ref() else { continue };
            if routes.default.is_none() {
                routes.default = spec.default_backend.as_ref().and_then(|b| backend_of(ns, b));
            }
            for rule in spec.rules.iter().flatten() {
                let host = rule.host.clone().filter(|h| !h.is_empty()).map(|h| h.to_ascii_lowercase());
                for p in rule.http.iter().flat_map(|h| h.paths.iter()) {
                    let Some(backend) = backend_of(ns, &p.backend) else { continue };
                    routes.routes.push(Route {
                        host: host.clone(),
                        path: p.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into()),
                        exact: p.path_type == "Exact",
                        backend,
                    });
                }
            }
        }
        routes
    }

    /// The backend of a request for `host` (the Host header, without port) and `path`.
    pub fn choose(&self, host: &str, path: &str) -> Option<&Backend> {
        let host = host.to_ascii_lowercase();
        // (host tier, longer path first, exact first, rule order)
        let best = self
            .routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let tier = host_tier(r.host.as_deref(), &host)?;
                let matched = if r.exact { r.path == path } else { prefix_matches(&r.path, path) };
                matched.then_some(((tier, std::cmp::Reverse(r.path.len()), !r.exact, i), r))
            })
            .min_by(|a, b| a.0.cmp(&b.0));
        best.map(|(_, r)| &r.backend).or(self.default.as_ref())
    }
}

/// The ready endpoints of `backend` (pure): its Service's port by number or name, then
/// the EndpointSlices' port of that name.
pub fn backend_targets(backend: &Backend, services: &[&Service], slices: &[&EndpointSlice], node: &str) -> Vec<Target> {
    let Some(svc) = services.iter().find(|s| {
        s.metadata.namespace.as_deref() == Some(&backend.namespace)
            && s.metadata.name.as_deref() == Some(&backend.service)
    }) else {
        return vec![];
    };
    let Some(port) = svc.spec.iter().flat_map(|s| s.ports.iter().flatten()).find(|p| match &backend.port {
        PortRef::Number(n) => p.port == *n,
        PortRef::Name(name) => p.name.as_deref() == Some(name),
    }) else {
        return vec![];
    };
    if Protocol::of(port.protocol.as_deref()) != Some(Protocol::Tcp) {
        return vec![];
    }
    let own: Vec<&EndpointSlice> = slices
        .iter()
        .copied()
        .filter(|s| {
            s.metadata.namespace.as_deref() == Some(&backend.namespace)
                && s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) == Some(&backend.service)
        })
        .collect();
    endpoints_of(&own, port.name.as_deref().unwrap_or_default(), Protocol::Tcp, node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(name: &str, created: &str, spec: serde_json::Value) -> Ingress {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "shop", "creationTimestamp": created},
                                      "spec": spec}))
        .unwrap()
    }

    fn to(svc: &str) -> serde_json::Value {
        json!({"service": {"name": svc, "port": {"number": 80}}})
    }

    fn routes() -> Routes {
        let a = ingress(
            "a",
            "2026-01-01T00:00:00Z",
            json!({
            "defaultBackend": to("fallback"),
            "rules": [
                {"host": "shop.example", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": to("front")},
                    {"path": "/api", "pathType": "Prefix", "backend": to("api")},
                    {"path": "/api/v1", "pathType": "Exact", "backend": to("api-v1")}]}},
                {"host": "*.example", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": to("wild")}]}},
                {"http": {"paths": [{"path": "/static", "pathType": "ImplementationSpecific", "backend": to("static")}]}}
            ]}),
        );
        let b = ingress("b", "2026-02-01T00:00:00Z", json!({"defaultBackend": to("later")}));
        Routes::of(&[&b, &a])
    }

    fn chosen(routes: &Routes, host: &str, path: &str) -> Option<String> {
        routes.choose(host, path).map(|b| b.service.clone())
    }

    #[test]
    fn hosts_then_longest_paths_then_the_default_backend() {
        let r = routes();
        assert_eq!(chosen(&r, "shop.example", "/").as_deref(), Some("front"));
        assert_eq!(chosen(&r, "SHOP.example", "/apix").as_deref(), Some("front"), "whole elements only");
        assert_eq!(chosen(&r, "shop.example", "/api/users").as_deref(), Some("api"));
        assert_eq!(chosen(&r, "shop.example", "/api/v1").as_deref(), Some("api-v1"));
        assert_eq!(chosen(&r, "shop.example", "/api/v1/x").as_deref(), Some("api"), "Exact is exact");
        assert_eq!(chosen(&r, "blog.example", "/").as_deref(), Some("wild"));
        assert_eq!(chosen(&r, "a.b.example", "/static/x.css").as_deref(), Some("static"), "one label for '*'");
        assert_eq!(chosen(&r, "other", "/nothing").as_deref(), Some("fallback"), "the oldest default backend");
        assert_eq!(Routes::default().choose("x", "/"), None);
    }

    #[test]
    fn a_backend_resolves_to_the_ready_endpoints_of_its_service_port() {
        let svc: Service = serde_json::from_value(json!({"metadata": {"name": "front", "namespace": "shop"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web"}]}}))
        .unwrap();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "front-x", "namespace": "shop", "labels": {SERVICE_NAME_LABEL: "front"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": true}},
                          {"addresses": ["10.244.1.6"], "conditions": {"ready": false}}]}))
        .unwrap();
        let by_number = Backend { namespace: "shop".into(), service: "front".into(), port: PortRef::Number(80) };
        let targets = backend_targets(&by_number, &[&svc], &[&slice], "node-1");
        assert_eq!(
            targets.iter().map(|t| (t.ip.to_string(), t.port)).collect::<Vec<_>>(),
            vec![("10.244.1.5".to_string(), 8080)]
        );
        let by_name = Backend { port: PortRef::Name("http".into()), ..by_number.clone() };
        assert_eq!(backend_targets(&by_name, &[&svc], &[&slice], "node-1").len(), 1);
        let wrong = Backend { port: PortRef::Number(81), ..by_number };
        assert!(backend_targets(&wrong, &[&svc], &[&slice], "node-1").is_empty());
    }
}
