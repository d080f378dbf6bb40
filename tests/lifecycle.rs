//! The GoCD lifecycle rules against the in-memory runtime, with a fake processor bridge
//! on loopback recording what the service asked.

use std::time::Duration;

use gocd_dind::listing::PodPhase;
use gocd_dind::service::Lifecycle;
use serde_json::{json, Value};

use crate::support::{memory_cluster, memory_harness, MemoryHarness};

const DISABLE: &str = "go.processor.elastic-agents.disable-agents";
const DELETE: &str = "go.processor.elastic-agents.delete-agents";
const HEALTH: &str = "go.processor.server-health.add-messages";

pub fn job(job_id: i64) -> Value {
    json!({"pipeline_name": "build", "pipeline_label": "7", "pipeline_counter": 7, "stage_name": "test", "stage_counter": "1", "job_name": "unit", "job_id": job_id})
}

pub fn create_body(cluster: &Value, job_id: i64) -> Value {
    json!({
        "auto_register_key": format!("key-{job_id}"),
        "elastic_agent_profile_properties": {},
        "cluster_profile_properties": cluster,
        "environment": "prod",
        "job_identifier": job(job_id),
    })
}

/// Waits for the service's background work, then expects `n` running pods.
pub async fn wait_pods(h: &MemoryHarness, n: usize) {
    h.harness.service.settle().await;
    let pods = h.runtime.pods();
    let running = pods.iter().filter(|p| p.info.phase == PodPhase::Running).count();
    assert_eq!(
        running,
        n,
        "running pods: have {:?}; console:\n{}",
        pods.iter().map(|p| (&p.info.name, &p.info.phase)).collect::<Vec<_>>(),
        h.harness.gocd.console_text()
    );
}

/// create-agent, then the pod once its start (in the background) has run.
async fn create(h: &MemoryHarness, cluster: &Value, job_id: i64) -> String {
    let (status, body) =
        h.harness.send("cd.go.elastic-agent.create-agent", &create_body(cluster, job_id)).await.unwrap();
    assert_eq!(status, 200, "{body}");
    h.harness.service.settle().await;
    h.runtime
        .pods()
        .into_iter()
        .find(|p| p.info.job_id == job_id && p.info.phase == PodPhase::Running)
        .unwrap_or_else(|| panic!("no running pod for job {job_id}; console:\n{}", h.harness.gocd.console_text()))
        .info
        .name
}

async fn ping(h: &MemoryHarness, cluster: &Value) {
    let (status, body) = h
        .harness
        .send("cd.go.elastic-agent.server-ping", &json!({"all_cluster_profile_properties": [cluster]}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
}

async fn assign(h: &MemoryHarness, cluster: &Value, agent: &str, job_id: i64) -> bool {
    let body = json!({"agent": {"agent_id": agent, "agent_state": "Idle", "build_state": "Idle", "config_state": "Enabled"}, "job_identifier": job(job_id), "cluster_profile_properties": cluster, "elastic_agent_profile_properties": {}, "environment": "prod"});
    let (status, answer) = h.harness.send("cd.go.elastic-agent.should-assign-work", &body).await.unwrap();
    assert_eq!(status, 200);
    serde_json::from_str(&answer).unwrap()
}

fn pod_names(h: &MemoryHarness) -> Vec<String> {
    h.runtime.pods().into_iter().map(|p| p.info.name).collect()
}

fn ids_in(calls: &[gocd_dind::fake_gocd::Call]) -> Vec<String> {
    calls
        .iter()
        .flat_map(|c| serde_json::from_str::<Vec<Value>>(&c.body).unwrap())
        .map(|a| a["agent_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_create_agent_for_one_job_makes_one_pod() {
    let h = memory_harness().await;
    // The pod stays in creation until released: every request below finds it there.
    h.runtime.hold_creates();
    let cluster = memory_cluster(&[]);
    let body = create_body(&cluster, 101);
    let sends = (0..5).map(|_| h.harness.send("cd.go.elastic-agent.create-agent", &body));
    for (status, body) in futures_util::future::join_all(sends).await.into_iter().map(Result::unwrap) {
        assert_eq!(status, 200, "{body}");
    }
    let record = h.harness.service.pod_of_job(101).expect("a pod record for the job");
    assert_eq!(record.lifecycle, Lifecycle::Creating, "the pod is still being created");
    h.runtime.release_creates();
    wait_pods(&h, 1).await;
    assert_eq!(h.runtime.created_total(), 1);
    // And again once it exists: GoCD re-sends while the job waits.
    h.harness.send("cd.go.elastic-agent.create-agent", &create_body(&cluster, 101)).await.unwrap();
    h.harness.service.settle().await;
    assert_eq!(h.runtime.created_total(), 1);
}

#[tokio::test]
async fn pod_is_assigned_only_its_own_job_and_removed_at_job_completion() {
    let h = memory_harness().await;
    let cluster = memory_cluster(&[]);
    let name = create(&h, &cluster, 201).await;
    h.harness.gocd.set_agent(&name, "Idle", "Enabled");
    assert!(assign(&h, &cluster, &name, 201).await);
    assert!(!assign(&h, &cluster, &name, 202).await, "another job's work");
    assert!(!assign(&h, &cluster, "gocd-dind-unknown", 201).await, "an unknown agent");
    h.harness.gocd.set_agent(&name, "Building", "Enabled");
    let completion = json!({"elastic_agent_id": name, "job_identifier": job(201), "cluster_profile_properties": cluster, "elastic_agent_profile_properties": {}});
    assert_eq!(h.harness.send("cd.go.elastic-agent.job-completion", &completion).await.unwrap().0, 200);
    assert!(pod_names(&h).is_empty());
    let calls: Vec<String> =
        h.harness.gocd.calls().into_iter().map(|c| c.api).filter(|a| a == DISABLE || a == DELETE).collect();
    assert_eq!(calls, [DISABLE, DELETE], "disable before delete");
    assert!(h.harness.gocd.agents().is_empty());
    assert!(!assign(&h, &cluster, &name, 201).await, "a removed pod gets no work");
}

#[tokio::test]
async fn job_completion_finds_the_pod_with_an_empty_cluster_profile() {
    let h = memory_harness().await;
    let cluster = memory_cluster(&[]);
    let name = create(&h, &cluster, 251).await;
    let completion = json!({"elastic_agent_id": name, "job_identifier": job(251), "cluster_profile_properties": {}, "elastic_agent_profile_properties": {}});
    assert_eq!(h.harness.send("cd.go.elastic-agent.job-completion", &completion).await.unwrap().0, 200);
    assert!(pod_names(&h).is_empty());
}

#[tokio::test]
async fn never_registered_pod_is_removed_after_the_auto_register_timeout() {
    let h = memory_harness().await;
    let cluster = memory_cluster(&[("auto_register_timeout", "5")]);
    let name = create(&h, &cluster, 301).await;
    ping(&h, &cluster).await;
    assert_eq!(pod_names(&h), std::slice::from_ref(&name), "removed before the timeout");
    h.clock.advance(Duration::from_secs(4 * 60));
    ping(&h, &cluster).await;
    assert_eq!(pod_names(&h), [name]);
    h.clock.advance(Duration::from_secs(61));
    ping(&h, &cluster).await;
    assert!(pod_names(&h).is_empty(), "still there after the timeout");
}

#[tokio::test]
async fn idle_agent_of_a_cancelled_job_is_disabled_then_removed() {
    let h = memory_harness().await;
    let cluster = memory_cluster(&[]);
    let name = create(&h, &cluster, 401).await;
    h.harness.gocd.set_agent(&name, "Idle", "Enabled");
    h.clock.advance(Duration::from_secs(11 * 60));
    ping(&h, &cluster).await;
    assert_eq!(ids_in(&h.harness.gocd.calls_to(DISABLE)), std::slice::from_ref(&name));
    assert_eq!(pod_names(&h), std::slice::from_ref(&name), "removed before GoCD confirmed it disabled");
    ping(&h, &cluster).await;
    assert!(pod_names(&h).is_empty());
    assert_eq!(ids_in(&h.harness.gocd.calls_to(DELETE)), [name]);
}

#[tokio::test]
async fn agents_whose_pods_are_gone_are_disabled_then_deleted() {
    let h = memory_harness().await;
    let cluster = memory_cluster(&[]);
    h.harness.gocd.set_agent("gocd-dind-vanished", "LostContact", "Enabled");
    ping(&h, &cluster).await;
    let apis: Vec<String> =
        h.harness.gocd.calls().into_iter().map(|c| c.api).filter(|a| a == DISABLE || a == DELETE).collect();
    assert_eq!(apis, [DISABLE, DELETE]);
    assert!(h.harness.gocd.agents().is_empty());
}

#[tokio::test]
async fn a_building_agent_is_never_touched() {
    let h = memory_harness().await;
    let cluster = memory_cluster(&[]);
    let name = create(&h, &cluster, 501).await;
    h.harness.gocd.set_agent(&name, "Building", "Disabled");
    h.harness.gocd.set_agent("gocd-dind-podless-but-building", "Building", "Enabled");
    h.runtime.set_phase(&name, PodPhase::Stopped("agent exited".into()));
    h.clock.advance(Duration::from_secs(24 * 60 * 60));
    ping(&h, &cluster).await;
    ping(&h, &cluster).await;
    assert_eq!(pod_names(&h), [name]);
    assert!(h.harness.gocd.calls_to(DISABLE).is_empty() && h.harness.gocd.calls_to(DELETE).is_empty());
    assert_eq!(h.harness.gocd.agents().len(), 2);
}

#[tokio::test]
async fn an_unreachable_runtime_does_not_make_agents_look_orphaned() {
    let h = memory_harness().await;
    let cluster = memory_cluster(&[]);
    let name = create(&h, &cluster, 601).await;
    h.harness.gocd.set_agent(&name, "Idle", "Enabled");
    h.runtime.set_unreachable(true);
    ping(&h, &cluster).await;
    assert!(h.harness.gocd.calls_to(DISABLE).is_empty() && h.harness.gocd.calls_to(DELETE).is_empty());
    h.runtime.set_unreachable(false);
    assert_eq!(pod_names(&h), [name]);
}

#[tokio::test]
async fn pending_limit_says_so_in_the_console_and_server_health_then_clears() {
    let h = memory_harness().await;
    let cluster = memory_cluster(&[("max_pending_agents", "1")]);
    let first = create(&h, &cluster, 701).await;
    h.harness.send("cd.go.elastic-agent.create-agent", &create_body(&cluster, 702)).await.unwrap();
    h.harness.service.settle().await;
    assert_eq!(h.runtime.created_total(), 1, "a pod beyond the limit");
    assert!(h.harness.gocd.console_text().contains("max_pending_agents = 1"), "{}", h.harness.gocd.console_text());
    let health = h.harness.gocd.calls_to(HEALTH);
    assert_eq!(health.len(), 1);
    let messages: Vec<Value> = serde_json::from_str(&health[0].body).unwrap();
    assert_eq!(messages[0]["type"], "warning");
    assert!(messages[0]["message"].as_str().unwrap().contains("max_pending_agents"));
    // The first agent registers: the slot frees, the message goes away at the next ping.
    h.harness.gocd.set_agent(&first, "Building", "Enabled");
    ping(&h, &cluster).await;
    h.harness.service.settle().await;
    let health = h.harness.gocd.calls_to(HEALTH);
    assert_eq!(health.last().unwrap().body, "[]", "the warning was not cleared");
    create(&h, &cluster, 702).await;
}

#[tokio::test]
async fn total_limit_counts_running_agents_too() {
    let h = memory_harness().await;
    let cluster = memory_cluster(&[("max_running_agents", "2")]);
    for job_id in [801, 802] {
        let name = create(&h, &cluster, job_id).await;
        h.harness.gocd.set_agent(&name, "Building", "Enabled");
    }
    h.harness.send("cd.go.elastic-agent.create-agent", &create_body(&cluster, 803)).await.unwrap();
    h.harness.service.settle().await;
    assert_eq!(h.runtime.created_total(), 2);
    assert!(h.harness.gocd.console_text().contains("max_running_agents = 2"));
}

#[tokio::test]
async fn a_failing_bridge_never_fails_a_gocd_request() {
    let h = memory_harness().await;
    h.harness.gocd.set_failing(true);
    let cluster = memory_cluster(&[]);
    assert_eq!(h.harness.send("cd.go.elastic-agent.create-agent", &create_body(&cluster, 901)).await.unwrap().0, 200);
    assert_eq!(
        h.harness
            .send("cd.go.elastic-agent.server-ping", &json!({"all_cluster_profile_properties": [cluster]}))
            .await
            .unwrap()
            .0,
        200
    );
    let completion = json!({"elastic_agent_id": "gocd-dind-x", "job_identifier": job(901), "cluster_profile_properties": cluster, "elastic_agent_profile_properties": {}});
    assert_eq!(h.harness.send("cd.go.elastic-agent.job-completion", &completion).await.unwrap().0, 200);
    h.harness.service.settle().await;
    assert_eq!(h.runtime.created_total(), 0, "no server id, no pod");
    // GoCD is back: the next create-agent (GoCD re-sends) works.
    h.harness.gocd.set_failing(false);
    create(&h, &cluster, 901).await;
}

#[tokio::test]
async fn a_pod_that_fails_to_start_is_explained_in_the_console_and_the_agent_report() {
    let h = memory_harness().await;
    h.runtime.fail_creates_with(Some("dockerd: failed to start daemon: permission denied"));
    let cluster = memory_cluster(&[]);
    h.harness.send("cd.go.elastic-agent.create-agent", &create_body(&cluster, 1001)).await.unwrap();
    h.harness.service.settle().await;
    let console = h.harness.gocd.console_text();
    assert!(console.contains("failed to start") && console.contains("permission denied"), "{console}");
    assert!(pod_names(&h).is_empty());
    let (_, report) = h
        .harness
        .send(
            "cd.go.elastic-agent.agent-status-report",
            &json!({"cluster_profile_properties": cluster, "job_identifier": job(1001)}),
        )
        .await
        .unwrap();
    assert!(report.contains("permission denied"), "{report}");
}

#[tokio::test]
async fn should_assign_work_recovers_after_a_restart() {
    // A new service (empty memory) over the same runtime: the first ask refreshes.
    let h = memory_harness().await;
    let cluster = memory_cluster(&[]);
    let name = create(&h, &cluster, 1101).await;
    let restarted = h.another_service().await.harness;
    let body = json!({"agent": {"agent_id": name, "agent_state": "Idle", "build_state": "Idle", "config_state": "Enabled"}, "job_identifier": job(1101), "cluster_profile_properties": cluster});
    let ask = || async { restarted.send("cd.go.elastic-agent.should-assign-work", &body).await.unwrap().1 };
    assert_eq!(ask().await, "false", "an agent the new service has not listed yet");
    // That answer started a listing; once it has run the agent is known.
    restarted.service.settle().await;
    assert_eq!(ask().await, "true", "the agent's own job after the listing");
}

#[tokio::test]
async fn a_kubernetes_profile_without_an_api_server_is_refused_clearly() {
    // The service's own provider: the in-memory runtime for `memory`, the real ones otherwise.
    let clock = gocd_dind::clock::Clock::default();
    let runtime = gocd_dind::runtime::memory::MemoryRuntime::new(clock.clone());
    let runtimes = gocd_dind::runtime::Runtimes::with_memory(runtime.clone());
    let options = gocd_dind::service::ServiceOptions { allow_memory_runtime: true };
    let harness = gocd_dind::demo::Harness::start(std::sync::Arc::new(runtimes), clock.clone(), options).await.unwrap();
    let h = MemoryHarness { harness, runtime, clock };
    // No kubernetes_cluster_url, and this test does not run inside a cluster.
    let kubernetes =
        json!({"runtime": "kubernetes", "go_server_url": "https://gocd.example.com/go", "agent_image": "a:1"});
    let (status, answer) =
        h.harness.send("cd.go.elastic-agent.create-agent", &create_body(&kubernetes, 1201)).await.unwrap();
    assert_eq!(status, 422, "{answer}");
    assert!(answer.contains("kubernetes_cluster_url"), "{answer}");
    h.harness.service.settle().await;
    let console = h.harness.gocd.console_text();
    assert!(console.contains("kubernetes_cluster_url"), "{console}");
    // It cannot be listed, so agents without a pod elsewhere are not removed on its account.
    h.harness.gocd.set_agent("gocd-dind-maybe-there", "Idle", "Enabled");
    let ping = json!({"all_cluster_profile_properties": [kubernetes, memory_cluster(&[])]});
    assert_eq!(h.harness.send("cd.go.elastic-agent.server-ping", &ping).await.unwrap().0, 200);
    assert_eq!(h.harness.gocd.agents().len(), 1);
}

#[tokio::test]
async fn the_job_console_tells_the_start_in_order_with_durations() {
    let h = memory_harness().await;
    let cluster = memory_cluster(&[]);
    let pod = create(&h, &cluster, 61).await;
    wait_pods(&h, 1).await;
    let console = h.harness.gocd.console_text();
    let lines: Vec<&str> = console.lines().collect();
    let position = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in the console:\n{console}"))
    };
    let (creating, ready, up) =
        (position(&format!("Creating agent pod {pod}")), position("dockerd ready in"), position("is up after"));
    assert!(creating < ready && ready < up, "the lines arrive in the order they were written:\n{console}");
    assert!(lines[ready].contains(" s ") && lines[up].contains(" s: agent started"), "with durations:\n{console}");
}
