//! Prometheus metrics on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub request: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestName {
    pub request: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<RequestName, Histogram>,
    pub pods_created: Counter,
    pub pod_create_failures: Family<Reason, Counter>,
    pub pod_ready_seconds: Histogram,
    pub pods_removed: Family<Reason, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("gocd_dind");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "GoCD plugin requests by request name and HTTP status", requests.clone());
        let request_seconds = Family::<RequestName, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 4.0, 10))
        });
        registry.register("request_duration_seconds", "Time to answer a GoCD plugin request", request_seconds.clone());
        let pods_created = Counter::default();
        registry.register(
            "pods_created",
            "Agent pods whose daemon answered and whose agent started",
            pods_created.clone(),
        );
        let pod_create_failures = Family::<Reason, Counter>::default();
        registry.register("pod_create_failures", "Agent pods that could not be started", pod_create_failures.clone());
        let pod_ready_seconds = Histogram::new(exponential_buckets(0.5, 2.0, 10));
        registry.register(
            "pod_ready_seconds",
            "create-agent to dockerd answering over TLS and the agent started",
            pod_ready_seconds.clone(),
        );
        let pods_removed = Family::<Reason, Counter>::default();
        registry.register("pods_removed", "Agent pods removed, by reason", pods_removed.clone());
        Self { registry, requests, request_seconds, pods_created, pod_create_failures, pod_ready_seconds, pods_removed }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }

    pub fn removed(&self, reason: &str) {
        self.pods_removed.get_or_create(&Reason { reason: reason.to_owned() }).inc();
    }
}
