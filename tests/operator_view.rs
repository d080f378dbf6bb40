//! What an operator sees, against the in-memory runtime: `/metrics` through a pod's start,
//! a limit, a failure and a deleted profile; the agent page saying why a job has no pod;
//! the plugin page grouping profiles by place and keeping post-mortems.

use std::sync::Arc;

use gocd_dind::runtime::memory::{MemoryProvider, MemoryRuntime};
use gocd_dind::service::ServiceOptions;
use serde_json::{json, Value};

use crate::lifecycle::{create_body, job};
use crate::support::{memory_cluster, memory_harness, MemoryHarness};

/// A second engine, for profiles with `docker_host = tcp://other:2376`.
const OTHER: &str = "tcp://other:2376";

async fn two_engines() -> (MemoryHarness, Arc<MemoryRuntime>) {
    let clock = gocd_dind::clock::Clock::default();
    let (runtime, other) = (MemoryRuntime::new(clock.clone()), MemoryRuntime::new(clock.clone()));
    let provider = MemoryProvider::new(runtime.clone()).with_engine(OTHER, other.clone());
    let options = ServiceOptions { allow_memory_runtime: true };
    let harness = gocd_dind::demo::Harness::start(Arc::new(provider), clock.clone(), options).await.unwrap();
    (MemoryHarness { harness, runtime, clock }, other)
}

/// The value of the sample of `name` whose labels include all of `labels`.
pub fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        let matches = metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        matches.then(|| value.parse().ok()).flatten()
    })
}

async fn metrics(h: &MemoryHarness) -> String {
    reqwest::get(format!("{}/metrics", h.harness.url)).await.unwrap().text().await.unwrap()
}

async fn send(h: &MemoryHarness, request: &str, body: &Value) -> String {
    let (status, answer) = h.harness.send(request, body).await.unwrap();
    assert_eq!(status, 200, "{request}: {answer}");
    answer
}

async fn create(h: &MemoryHarness, cluster: &Value, job_id: i64) {
    send(h, "cd.go.elastic-agent.create-agent", &create_body(cluster, job_id)).await;
    h.harness.service.settle().await;
}

fn pod_of(h: &MemoryHarness, job_id: i64) -> String {
    h.harness.service.pod_of_job(job_id).expect("a pod for the job").info.name
}

async fn ask_for_work(h: &MemoryHarness, cluster: &Value, pod: &str, job_id: i64) -> String {
    let body = json!({"agent": {"agent_id": pod, "agent_state": "Idle", "build_state": "Idle", "config_state": "Enabled"}, "job_identifier": job(job_id), "cluster_profile_properties": cluster});
    send(h, "cd.go.elastic-agent.should-assign-work", &body).await
}

/// The cluster label of the gauges for the profile the pod of `job_id` runs under.
fn cluster_of(h: &MemoryHarness, job_id: i64) -> String {
    h.harness.service.pod_of_job(job_id).expect("a pod for the job").cluster.0
}

fn view(answer: &str) -> String {
    serde_json::from_str::<Value>(answer).unwrap()["view"].as_str().unwrap().to_owned()
}

async fn agent_page(h: &MemoryHarness, cluster: &Value, job_id: i64) -> String {
    let body = json!({"cluster_profile_properties": cluster, "job_identifier": job(job_id)});
    view(&send(h, "cd.go.elastic-agent.agent-status-report", &body).await)
}

#[tokio::test]
async fn metrics_follow_pods_through_start_limits_failures_and_a_deleted_profile() {
    let (h, other_engine) = two_engines().await;
    let cluster = memory_cluster(&[("max_pending_agents", "1")]);
    create(&h, &cluster, 1).await;
    let pod = pod_of(&h, 1);
    let id = cluster_of(&h, 1);
    let m = metrics(&h).await;
    let c = ("cluster", id.as_str());
    assert_eq!(sample(&m, "gocd_dind_pods", &[c, ("state", "pending")]), Some(1.0), "{m}");
    assert_eq!(sample(&m, "gocd_dind_pods", &[c, ("state", "running")]), Some(0.0), "{m}");
    assert_eq!(sample(&m, "gocd_dind_pod_limit", &[c, ("limit", "pending")]), Some(1.0), "{m}");
    assert_eq!(sample(&m, "gocd_dind_pod_limit", &[c, ("limit", "total")]), Some(50.0), "{m}");
    assert_eq!(sample(&m, "gocd_dind_runtime_up", &[c]), Some(1.0), "{m}");
    for stage in ["pod_ready", "agent_started"] {
        let labels = [("stage", stage), ("runtime", "memory")];
        assert_eq!(sample(&m, "gocd_dind_agent_start_seconds_count", &labels), Some(1.0), "{stage}: {m}");
    }
    assert_eq!(sample(&m, "gocd_dind_agent_start_seconds_count", &[("stage", "agent_registered")]), None);
    assert_eq!(sample(&m, "gocd_dind_pod_failures_total", &[("reason", "image_pull")]), Some(0.0), "{m}");

    // A second job waits on the pending limit, twice (GoCD re-sends create-agent).
    create(&h, &cluster, 2).await;
    create(&h, &cluster, 2).await;
    let m = metrics(&h).await;
    assert_eq!(sample(&m, "gocd_dind_limit_hits_total", &[c, ("limit", "pending")]), Some(2.0), "{m}");

    // The agent asks for work: registered, then assigned.
    assert_eq!(ask_for_work(&h, &cluster, &pod, 1).await, "true");
    let m = metrics(&h).await;
    assert_eq!(sample(&m, "gocd_dind_pods", &[c, ("state", "running")]), Some(1.0), "{m}");
    assert_eq!(sample(&m, "gocd_dind_pods", &[c, ("state", "pending")]), Some(0.0), "{m}");
    for stage in ["agent_registered", "job_assigned"] {
        let labels = [("stage", stage), ("runtime", "memory")];
        assert_eq!(sample(&m, "gocd_dind_agent_start_seconds_count", &labels), Some(1.0), "{stage}: {m}");
    }
    assert_eq!(ask_for_work(&h, &cluster, &pod, 1).await, "true");
    let m = metrics(&h).await;
    let assigned = [("stage", "job_assigned"), ("runtime", "memory")];
    assert_eq!(sample(&m, "gocd_dind_agent_start_seconds_count", &assigned), Some(1.0), "observed once per pod");

    // A start that fails, on another engine.
    let other = memory_cluster(&[("docker_host", OTHER)]);
    other_engine.fail_creates_with(Some("level=error msg=\"failed to start daemon\""));
    create(&h, &other, 3).await;
    other_engine.fail_creates_with(None);
    let m = metrics(&h).await;
    assert_eq!(sample(&m, "gocd_dind_pod_failures_total", &[("reason", "dind_not_ready")]), Some(1.0), "{m}");

    // The engine stops answering: the next listing says so.
    h.runtime.set_unreachable(true);
    create(&h, &cluster, 4).await;
    let m = metrics(&h).await;
    assert_eq!(sample(&m, "gocd_dind_runtime_up", &[c]), Some(0.0), "{m}");
    h.runtime.set_unreachable(false);

    // GoCD's profiles no longer include the first: its cluster drops out of every gauge.
    send(&h, "cd.go.elastic-agent.server-ping", &json!({"all_cluster_profile_properties": [other]})).await;
    let m = metrics(&h).await;
    let gone: Vec<&str> = m.lines().filter(|l| l.contains(&format!("cluster=\"{id}\""))).collect();
    assert!(gone.is_empty(), "the deleted profile's cluster is still there: {gone:?}");
    assert!(sample(&m, "gocd_dind_pod_limit", &[("limit", "total")]).is_some(), "the remaining profile's: {m}");
    for line in m.lines().filter(|l| !l.starts_with('#')) {
        assert!(!line.contains(&pod) && !line.contains("job_id"), "no pod or job in a label: {line}");
    }
}

#[tokio::test]
async fn the_agent_page_says_why_a_job_has_no_pod_and_keeps_what_became_of_it() {
    let h = memory_harness().await;
    let cluster = memory_cluster(&[("max_pending_agents", "1")]);
    create(&h, &cluster, 11).await;
    let pod = pod_of(&h, 11);

    create(&h, &cluster, 12).await;
    let page = agent_page(&h, &cluster, 12).await;
    assert!(page.contains("Waiting for a free slot since"), "{page}");
    assert!(page.contains("max_pending_agents = 1") && page.contains("The limit is max_pending_agents"), "{page}");

    let running = agent_page(&h, &cluster, 11).await;
    for stage in ["created", "dockerd ready", "agent started"] {
        assert!(running.contains(&format!("<td>{stage}</td>")), "the timeline has {stage}: {running}");
    }
    assert!(running.contains("/go/admin/status_reports/gocd-dind/agent/") || running.contains(&pod), "{running}");

    ask_for_work(&h, &cluster, &pod, 11).await;
    let completion = json!({"elastic_agent_id": pod, "job_identifier": job(11), "cluster_profile_properties": cluster, "elastic_agent_profile_properties": {}});
    send(&h, "cd.go.elastic-agent.job-completion", &completion).await;
    let gone = agent_page(&h, &cluster, 11).await;
    assert!(gone.contains(&format!("Pod {pod} was removed")) && gone.contains("its job completed"), "{gone}");
    assert!(gone.contains(&format!("Post-mortem of pod {pod}")), "{gone}");
    for stage in ["registered", "assigned", "completed", "removed"] {
        assert!(gone.contains(&format!("<td>{stage}</td>")), "the post-mortem's timeline has {stage}: {gone}");
    }

    let other = memory_cluster(&[("docker_host", OTHER)]);
    h.runtime.fail_creates_with(Some("level=error msg=\"failed to start daemon: pid file found\""));
    create(&h, &other, 13).await;
    let failed = agent_page(&h, &other, 13).await;
    assert!(failed.contains("could not start (dind_not_ready)"), "{failed}");
    assert!(failed.contains("failed to start daemon: pid file found"), "dockerd's problem is listed: {failed}");

    let never = agent_page(&h, &cluster, 14).await;
    assert!(never.contains("No agent pod exists for this job"), "{never}");
}

#[tokio::test]
async fn the_plugin_page_groups_profiles_by_place_and_lists_failures_and_gone_pods() {
    let h = memory_harness().await;
    let good = memory_cluster(&[("max_pending_agents", "2")]);
    let broken = memory_cluster(&[("max_pending_agents", "2"), ("dind_image", "registry.example/no-such-dind:1")]);
    create(&h, &good, 21).await;
    h.runtime.fail_creates_with(Some("level=error msg=\"pull access denied\""));
    create(&h, &broken, 22).await;
    h.runtime.fail_creates_with(None);
    let page = view(
        &send(
            &h,
            "cd.go.elastic-agent.plugin-status-report",
            &json!({"all_cluster_profiles_properties": [good, broken]}),
        )
        .await,
    );
    assert_eq!(page.matches("<section><h3>in-memory test runtime").count(), 1, "one section for one place: {page}");
    assert!(page.contains("2 cluster profiles point here"), "{page}");
    assert!(page.contains("dind_image = registry.example/no-such-dind:1"), "named by what differs: {page}");
    assert!(page.contains("pending 1 / 2"), "pods against the limits: {page}");
    assert!(page.contains("Recent failures") && page.contains("dind_not_ready"), "{page}");
    assert!(page.contains("Recently gone pods"), "{page}");
    let pod = pod_of(&h, 21);
    assert!(
        page.contains(&format!("https://127.0.0.1:8154/go/admin/status_reports/gocd-dind/agent/{pod}?job_id=21")),
        "the pod links to GoCD's agent status page: {page}"
    );
    assert!(
        page.contains("https://127.0.0.1:8154/go/tab/build/detail/build/7/test/1/unit"),
        "the job links to its page on GoCD: {page}"
    );
}
