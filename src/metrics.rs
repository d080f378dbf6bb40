//! Prometheus metrics on `/metrics`. Every label takes values from a small fixed set or
//! names a cluster (a cluster profile's identity); never a job or a pod. The per-cluster
//! gauges are set from the service's state at each scrape, so a cluster no profile names
//! any more drops out of them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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

/// `gocd_dind_agent_start_seconds`: `stage` is one of `pod_ready`, `agent_started`,
/// `agent_registered`, `job_assigned`; `runtime` is `docker` or `kubernetes`; `start` is
/// `cold` (a pod made for the job) or `warm` (a warm pod the job claimed, timed from the
/// claim).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StartLabels {
    pub stage: &'static str,
    pub runtime: &'static str,
    pub start: &'static str,
}

/// `state` is one of `creating`, `pending`, `running`, `terminating`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PodsLabels {
    pub cluster: String,
    pub state: &'static str,
}

/// `limit` is `pending` or `total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub cluster: String,
    pub limit: &'static str,
}

/// `gocd_dind_warm_pods`: `pool` is a warm pool's id (a hash of what shapes its pods, as
/// on the pods' `gocd-dind.gocd.org/pool` label); `state` is `warming` or `ready`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WarmLabels {
    pub cluster: String,
    pub pool: String,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabel {
    pub cluster: String,
}

/// Seconds from the creation decision to a start stage: a claimed warm pod's agent starts
/// within a tenth of a second or two, dockerd answers within seconds,
/// an agent registers within a minute or two, a job waits for its agent up to the
/// auto-register timeout (10 minutes by default) and beyond.
const START_BUCKETS: [f64; 16] =
    [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0];

pub struct Metrics {
    registry: Registry,
    /// One scrape at a time: a scrape clears and sets the gauges before encoding.
    scraping: std::sync::Mutex<()>,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<RequestName, Histogram>,
    pub pods_created: Counter,
    pub pod_create_failures: Family<Reason, Counter>,
    pub pod_ready_seconds: Histogram,
    pub pods_removed: Family<Reason, Counter>,
    pub agent_start_seconds: Family<StartLabels, Histogram>,
    pub pods: Family<PodsLabels, Gauge>,
    pub pod_limit: Family<LimitLabels, Gauge>,
    pub pod_failures: Family<Reason, Counter>,
    pub limit_hits: Family<LimitLabels, Counter>,
    pub runtime_up: Family<ClusterLabel, Gauge>,
    pub warm_pods: Family<WarmLabels, Gauge>,
}

/// The per-cluster values a scrape sets, gathered by the service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterGauges {
    pub cluster: String,
    /// Pods by state: creating, pending, running, terminating.
    pub pods: [(&'static str, i64); 4],
    pub max_pending: i64,
    pub max_total: i64,
    /// Whether the last listing or probe of its engine or API server succeeded.
    pub up: Option<bool>,
    /// Unclaimed warm pods by pool and state (`warming`, `ready`).
    pub warm: Vec<(String, &'static str, i64)>,
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
        let agent_start_seconds =
            Family::<StartLabels, Histogram>::new_with_constructor(|| Histogram::new(START_BUCKETS));
        registry.register(
            "agent_start_seconds",
            "Seconds from create-agent's decision to create a pod to each stage of its start: pod_ready (dockerd answers over TLS), agent_started, agent_registered (GoCD knows the agent), job_assigned",
            agent_start_seconds.clone(),
        );
        let pods = Family::<PodsLabels, Gauge>::default();
        registry.register(
            "pods",
            "Agent pods per cluster by state: creating, pending (started, agent not registered), running (registered), terminating",
            pods.clone(),
        );
        let pod_limit = Family::<LimitLabels, Gauge>::default();
        registry.register(
            "pod_limit",
            "The cluster profile's maxima: pending (max_pending_agents, counts creating and pending pods) and total (max_running_agents, counts every pod)",
            pod_limit.clone(),
        );
        let pod_failures = Family::<Reason, Counter>::default();
        // Every reason from the start, so a rate over it exists before the first failure.
        for reason in crate::runtime::FailureReason::ALL {
            let _ = pod_failures.get_or_create(&Reason { reason: reason.as_str().to_owned() });
        }
        registry.register(
            "pod_failures",
            "Agent pods that could not be started, by reason: image_pull, unschedulable, dind_not_ready, rejected, unreachable, other",
            pod_failures.clone(),
        );
        let limit_hits = Family::<LimitLabels, Counter>::default();
        registry.register(
            "limit_hits",
            "create-agent requests held back by a cluster profile's limit (GoCD re-sends create-agent while a job waits)",
            limit_hits.clone(),
        );
        let runtime_up = Family::<ClusterLabel, Gauge>::default();
        registry.register(
            "runtime_up",
            "1 when the last listing or probe of the cluster's Docker engine or Kubernetes API server succeeded, else 0",
            runtime_up.clone(),
        );
        let warm_pods = Family::<WarmLabels, Gauge>::default();
        registry.register(
            "warm_pods",
            "Warm pods no job has claimed yet, per cluster and warm pool (elastic profile), by state: warming (dockerd starting, images being pulled) or ready (claimable); they count as pending pods too",
            warm_pods.clone(),
        );
        Self {
            registry,
            scraping: std::sync::Mutex::default(),
            requests,
            request_seconds,
            pods_created,
            pod_create_failures,
            pod_ready_seconds,
            pods_removed,
            agent_start_seconds,
            pods,
            pod_limit,
            pod_failures,
            limit_hits,
            runtime_up,
            warm_pods,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }

    /// Sets the per-cluster gauges to exactly `clusters` (others drop out), then encodes.
    pub fn encode_with(&self, clusters: &[ClusterGauges]) -> String {
        let _one_scrape_at_a_time = self.scraping.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.pods.clear();
        self.pod_limit.clear();
        self.runtime_up.clear();
        self.warm_pods.clear();
        for c in clusters {
            for (pool, state, count) in &c.warm {
                let labels = WarmLabels { cluster: c.cluster.clone(), pool: pool.clone(), state };
                self.warm_pods.get_or_create(&labels).set(*count);
            }
            for (state, count) in c.pods {
                self.pods.get_or_create(&PodsLabels { cluster: c.cluster.clone(), state }).set(count);
            }
            for (limit, max) in [("pending", c.max_pending), ("total", c.max_total)] {
                self.pod_limit.get_or_create(&LimitLabels { cluster: c.cluster.clone(), limit }).set(max);
            }
            if let Some(up) = c.up {
                self.runtime_up.get_or_create(&ClusterLabel { cluster: c.cluster.clone() }).set(i64::from(up));
            }
        }
        self.encode()
    }

    /// Drops the counters of clusters no profile names any more.
    pub fn forget_clusters(&self, gone: &[String]) {
        for cluster in gone {
            for limit in ["pending", "total"] {
                self.limit_hits.remove(&LimitLabels { cluster: cluster.clone(), limit });
            }
        }
    }

    pub fn start_stage(&self, stage: &'static str, runtime: &'static str, start: &'static str, seconds: f64) {
        self.agent_start_seconds.get_or_create(&StartLabels { stage, runtime, start }).observe(seconds);
    }

    pub fn limit_hit(&self, cluster: &str, limit: &'static str) {
        self.limit_hits.get_or_create(&LimitLabels { cluster: cluster.to_owned(), limit }).inc();
    }

    pub fn pod_failure(&self, reason: &'static str) {
        self.pod_failures.get_or_create(&Reason { reason: reason.to_owned() }).inc();
    }

    pub fn removed(&self, reason: &str) {
        self.pods_removed.get_or_create(&Reason { reason: reason.to_owned() }).inc();
    }
}
