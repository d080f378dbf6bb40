//! State that follows GoCD's list of cluster profiles: a profile deleted or pointed at
//! another engine leaves nothing behind in the service (clusters, locks, server-health
//! messages, refresh times, registry records), and `/readyz` stops asking its engine.
//! The engines are in-memory runtimes told apart by `docker_host`.

use std::collections::BTreeSet;
use std::sync::Arc;

use gocd_dind::clock::Clock;
use gocd_dind::demo::Harness;
use gocd_dind::runtime::memory::{MemoryProvider, MemoryRuntime};
use gocd_dind::service::ServiceOptions;
use gocd_dind::settings::ClusterId;
use serde_json::{json, Value};

use crate::lifecycle::{create_body, job};
use crate::support::memory_cluster;

const HEALTH: &str = "go.processor.server-health.add-messages";

/// A service whose profiles reach engine A (`tcp://a:2376`), engine B (`tcp://b:2376`)
/// or, for any other `docker_host`, a third one.
pub struct Engines {
    pub h: Harness,
    pub a: Arc<MemoryRuntime>,
    pub b: Arc<MemoryRuntime>,
    pub other: Arc<MemoryRuntime>,
    pub clock: Clock,
}

/// Engine A answers to `tcp://a:2376` and to `tcp://a:2376/`, as one engine does to
/// every spelling of its address.
pub async fn engines() -> Engines {
    let clock = Clock::default();
    let (a, b, other) =
        (MemoryRuntime::new(clock.clone()), MemoryRuntime::new(clock.clone()), MemoryRuntime::new(clock.clone()));
    let provider = MemoryProvider::new(other.clone())
        .with_engine("tcp://a:2376", a.clone())
        .with_engine("tcp://a:2376/", a.clone())
        .with_engine("tcp://b:2376", b.clone());
    let options = ServiceOptions { allow_memory_runtime: true };
    let h = Harness::start(Arc::new(provider), clock.clone(), options).await.expect("harness starts");
    Engines { h, a, b, other, clock }
}

pub fn on(host: &str, overrides: &[(&str, &str)]) -> Value {
    let mut profile = memory_cluster(overrides);
    profile["docker_host"] = json!(host);
    profile
}

impl Engines {
    pub async fn send(&self, request: &str, body: &Value) -> String {
        let (status, answer) = self.h.send(request, body).await.unwrap();
        assert_eq!(status, 200, "{request}: {answer}");
        answer
    }

    pub async fn create(&self, cluster: &Value, job_id: i64) {
        self.send("cd.go.elastic-agent.create-agent", &create_body(cluster, job_id)).await;
        self.h.service.settle().await;
    }

    pub async fn ping(&self, clusters: &[&Value]) {
        self.send("cd.go.elastic-agent.server-ping", &json!({"all_cluster_profile_properties": clusters})).await;
        self.h.service.settle().await;
    }

    /// The cluster of the job's pod, as the service knows it.
    pub fn cluster_of(&self, job_id: i64) -> ClusterId {
        self.h.service.pod_of_job(job_id).unwrap_or_else(|| panic!("no pod known for job {job_id}")).cluster
    }

    pub async fn ready(&self) -> (u16, String) {
        let response = reqwest::get(format!("{}/readyz", self.h.url)).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Fills every per-cluster map for `cluster`: a pod, a pending-limit warning (with
    /// `max_pending_agents` 1), a refresh after an unknown agent asked for work.
    pub async fn use_fully(&self, cluster: &Value, first_job: i64) {
        self.create(cluster, first_job).await;
        self.create(cluster, first_job + 1).await;
        let ask = json!({"agent": {"agent_id": "gocd-dind-unknown", "agent_state": "Idle", "build_state": "Idle", "config_state": "Enabled"}, "job_identifier": job(first_job), "cluster_profile_properties": cluster});
        self.send("cd.go.elastic-agent.should-assign-work", &ask).await;
        self.h.service.settle().await;
    }

    pub fn last_health(&self) -> Vec<Value> {
        let calls = self.h.gocd.calls_to(HEALTH);
        serde_json::from_str(&calls.last().expect("a server-health call").body).unwrap()
    }
}

#[tokio::test]
async fn a_deleted_profile_leaves_no_state_and_its_warning_is_cleared() {
    let e = engines().await;
    let a = on("tcp://a:2376", &[("max_pending_agents", "1")]);
    let b = on("tcp://b:2376", &[("max_pending_agents", "1")]);
    e.use_fully(&a, 10).await;
    e.use_fully(&b, 20).await;
    let (a_id, b_id) = (e.cluster_of(10), e.cluster_of(20));
    let tracked = e.h.service.tracked_clusters();
    for (map, ids) in [
        ("clusters", &tracked.clusters),
        ("create locks", &tracked.create_locks),
        ("health", &tracked.health),
        ("last refresh", &tracked.last_refresh),
        ("registry", &tracked.registry),
    ] {
        assert_eq!(*ids, BTreeSet::from([a_id.clone(), b_id.clone()]), "{map} before the deletion");
    }
    assert_eq!(e.last_health().len(), 2, "both profiles warn");
    e.a.set_unreachable(true);
    assert_eq!(e.ready().await.0, 503, "A is live and unreachable");

    // Profile A is deleted: GoCD's next ping carries B alone.
    e.ping(&[&b]).await;
    assert_eq!(e.h.service.tracked_clusters().all(), BTreeSet::from([b_id.clone()]));
    let health = e.last_health();
    assert_eq!(health.len(), 1, "A's warning is cleared: {health:?}");
    assert!(health[0]["message"].as_str().unwrap().contains("tcp://b:2376"), "{health:?}");
    assert!(e.h.service.pod_of_job(10).is_none(), "A's pod is no longer managed");
    let (status, body) = e.ready().await;
    assert_eq!((status, body.contains("\"clusters\":1")), (200, true), "/readyz asks only B's engine: {body}");
    // Nothing was removed from A's engine on the strength of the profile's deletion.
    assert_eq!(e.a.pods().len(), 1);
}

#[tokio::test]
async fn migrate_config_prunes_to_the_profiles_it_carries() {
    let e = engines().await;
    let a = on("tcp://a:2376", &[("max_pending_agents", "1")]);
    let b = on("tcp://b:2376", &[]);
    e.use_fully(&a, 10).await;
    e.create(&b, 20).await;
    let migrate = json!({"plugin_settings": {}, "cluster_profiles": [{"id": "b", "plugin_id": "cd.go.contrib.elastic-agent.dind", "properties": b}], "elastic_agent_profiles": []});
    let echoed = e.send("cd.go.elastic-agent.migrate-config", &migrate).await;
    assert_eq!(serde_json::from_str::<Value>(&echoed).unwrap(), migrate);
    e.h.service.settle().await;
    assert_eq!(e.h.service.tracked_clusters().all(), BTreeSet::from([e.cluster_of(20)]));
    assert_eq!(e.last_health(), Vec::<Value>::new(), "A's warning is cleared");
}

#[tokio::test]
async fn a_re_pointed_profile_drops_the_old_engines_state_and_touches_none_of_its_pods() {
    let e = engines().await;
    let before = on("tcp://a:2376", &[("max_pending_agents", "1")]);
    e.use_fully(&before, 10).await;
    let old = e.cluster_of(10);
    // The same profile, now pointing at another engine.
    let after = on("tcp://c:2376", &[("max_pending_agents", "1")]);
    e.ping(&[&after]).await;
    e.create(&after, 30).await;
    let new = e.cluster_of(30);
    assert_ne!(old, new);
    assert_eq!(e.h.service.tracked_clusters().all(), BTreeSet::from([new]));
    assert_eq!(e.last_health(), Vec::<Value>::new(), "the old engine's warning is cleared");
    assert_eq!((e.a.pods().len(), e.other.pods().len()), (1, 1), "each engine keeps its pod");
    assert!(e.b.pods().is_empty());
}

#[tokio::test]
async fn profiles_naming_one_engine_share_one_snapshot_and_the_longest_timeout() {
    let e = engines().await;
    let quick = on("tcp://a:2376", &[("auto_register_timeout", "5")]);
    let patient = on("tcp://a:2376", &[("auto_register_timeout", "10")]);
    e.create(&quick, 10).await;
    e.clock.advance(std::time::Duration::from_secs(6 * 60));
    e.ping(&[&quick, &patient]).await;
    assert_eq!(e.a.pods().len(), 1, "removed before the longer timeout of a profile sharing the engine");
    e.clock.advance(std::time::Duration::from_secs(5 * 60));
    e.ping(&[&quick, &patient]).await;
    assert!(e.a.pods().is_empty());
    let metrics = reqwest::get(format!("{}/metrics", e.h.url)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"gocd_dind_pods_removed_total{reason="never-registered"} 1"#),
        "removed once: {metrics}"
    );
}

#[tokio::test]
async fn a_creating_record_does_not_outlive_its_task() {
    let e = engines().await;
    let cluster = on("tcp://a:2376", &[]);
    e.a.panic_in_creates(true);
    e.create(&cluster, 40).await;
    assert!(e.h.service.pod_of_job(40).is_none(), "the record of a creation that died is left behind");
    // GoCD asks again: this time a pod is made.
    e.a.panic_in_creates(false);
    e.create(&cluster, 40).await;
    assert_eq!((e.a.pods().len(), e.a.created_total()), (1, 1));
}
