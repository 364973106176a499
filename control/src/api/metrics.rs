//! API request metrics, named as kube-apiserver's so existing dashboards read them:
//! `apiserver_request_total{verb,resource,code}` and
//! `apiserver_request_duration_seconds{verb,resource}`, plus the watch gauges.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub resource: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub verb: String,
    pub resource: String,
}

pub struct ApiMetrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<LatencyLabels, Histogram>,
    pub watchers: Gauge<i64, AtomicI64>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ApiMetrics {
    pub fn new() -> ApiMetrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let watchers = Gauge::<i64, AtomicI64>::default();
        registry.register("apiserver_request", "API requests by verb, resource and HTTP code", requests.clone());
        registry.register(
            "apiserver_request_duration_seconds",
            "API request latency by verb and resource (watches: until the response starts)",
            latency.clone(),
        );
        registry.register("apiserver_registered_watchers", "API watches open on this server", watchers.clone());
        ApiMetrics { registry, requests, latency, watchers }
    }

    pub fn observe(&self, verb: &str, resource: &str, code: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels { verb: verb.into(), resource: resource.into(), code: code.to_string() })
            .inc();
        self.latency.get_or_create(&LatencyLabels { verb: verb.into(), resource: resource.into() }).observe(seconds);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_verb_and_resource() {
        let m = ApiMetrics::new();
        m.observe("LIST", "pods", 200, 0.01);
        m.observe("LIST", "pods", 200, 0.02);
        let text = m.encode();
        assert!(text.contains(r#"apiserver_request_total{verb="LIST",resource="pods",code="200"} 2"#), "{text}");
        assert!(text.contains("apiserver_request_duration_seconds_bucket"), "{text}");
    }
}
