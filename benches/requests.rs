//! Request handling with 1,000 live agents (not a test; `cargo bench --bench requests`).
//!
//! - should-assign-work through the service's router, in process, against a baseline of
//!   the same router answering `/healthz` (routing and body handling alone);
//! - server-ping's decision (`agents::plan_ping`) over 1,000 pods and agents, and the
//!   whole server-ping request against the in-memory runtime and a loopback bridge.
//!
//! Targets: should-assign-work p99 < 1 ms; server-ping decisions for 1,000 pods < 20 ms.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::http::Request;
use gocd_dind::agents::{plan_ping, ClusterSnapshot, Limits};
use gocd_dind::clock::Clock;
use gocd_dind::demo::Harness;
use gocd_dind::listing::{PodInfo, PodPhase};
use gocd_dind::protocol::AgentMetadata;
use gocd_dind::runtime::memory::{MemoryProvider, MemoryRuntime, StoredPod};
use gocd_dind::service::ServiceOptions;
use gocd_dind::settings::ClusterId;
use serde_json::json;
use tower::ServiceExt;

const AGENTS: usize = 1000;
const SAMPLES: usize = 20_000;

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    let at = |percent: usize| samples[(samples.len() - 1) * percent / 100];
    (at(0), at(50), at(99))
}

fn us(d: Duration) -> String {
    format!("{:8.1} µs", d.as_secs_f64() * 1e6)
}

#[tokio::main]
async fn main() {
    let clock = Clock::default();
    let runtime = MemoryRuntime::new(clock.clone());
    let harness = Harness::start(
        Arc::new(MemoryProvider::new(runtime.clone())),
        clock,
        ServiceOptions { allow_memory_runtime: true },
    )
    .await
    .unwrap();
    let cluster = json!({"runtime": "memory", "go_server_url": "https://gocd.example.com/go", "agent_image": "a:1", "max_pending_agents": "10000", "max_running_agents": "10000"});
    let started = Instant::now();
    for id in 0..i64::try_from(AGENTS).unwrap() {
        let body = json!({"auto_register_key": "k", "elastic_agent_profile_properties": {}, "cluster_profile_properties": cluster, "job_identifier": job(id)});
        assert_eq!(harness.send("cd.go.elastic-agent.create-agent", &body).await.unwrap().0, 200);
    }
    while runtime.pods().iter().filter(|p| p.info.phase == PodPhase::Running).count() < AGENTS {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pods = runtime.pods();
    for pod in &pods {
        harness.gocd.set_agent(&pod.info.name, "Idle", "Enabled");
    }
    println!("setup: {AGENTS} live agent pods in {:.1} s", started.elapsed().as_secs_f64());
    should_assign_work(&harness, &pods, &cluster).await;
    server_ping(&harness, &pods, &cluster).await;
}

fn job(id: i64) -> serde_json::Value {
    json!({"pipeline_name": "p", "pipeline_label": "1", "pipeline_counter": 1, "stage_name": "s", "stage_counter": "1", "job_name": "j", "job_id": id})
}

async fn should_assign_work(harness: &Harness, pods: &[StoredPod], cluster: &serde_json::Value) {
    let router = gocd_dind::http::router(harness.service.clone(), &harness.token);
    let auth = format!("Bearer {}", harness.token);
    let bodies: Vec<String> = pods
        .iter()
        .map(|p| {
            json!({"agent": {"agent_id": p.info.name, "agent_state": "Idle", "build_state": "Idle", "config_state": "Enabled"},
                   "job_identifier": job(p.info.job_id), "cluster_profile_properties": cluster, "elastic_agent_profile_properties": {}})
            .to_string()
        })
        .collect();
    let mut baseline = Vec::with_capacity(SAMPLES);
    let mut assign = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let request = Request::get("/healthz").body(Body::empty()).unwrap();
        let t = Instant::now();
        let response = router.clone().oneshot(request).await.unwrap();
        axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        baseline.push(t.elapsed());

        let request = Request::post("/gocd/elastic-agent/cd.go.elastic-agent.should-assign-work")
            .header("authorization", &auth)
            .body(Body::from(bodies[i % bodies.len()].clone()))
            .unwrap();
        let t = Instant::now();
        let response = router.clone().oneshot(request).await.unwrap();
        let answer = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        assign.push(t.elapsed());
        assert_eq!(&answer[..], b"true");
    }
    let (b_min, b_p50, b_p99) = percentiles(baseline);
    let (a_min, a_p50, a_p99) = percentiles(assign);
    println!("\nshould-assign-work with {AGENTS} live agents, {SAMPLES} requests through the router (in process):");
    println!("  {:<34} {:>11} {:>11} {:>11}", "", "min", "p50", "p99");
    println!("  {:<34} {} {} {}", "baseline: GET /healthz", us(b_min), us(b_p50), us(b_p99));
    println!("  {:<34} {} {} {}", "should-assign-work", us(a_min), us(a_p50), us(a_p99));
    println!(
        "  p99 {} (target < 1000 µs): {}",
        us(a_p99),
        if a_p99 < Duration::from_millis(1) { "met" } else { "MISSED" }
    );
}

async fn server_ping(harness: &Harness, pods: &[StoredPod], cluster: &serde_json::Value) {
    // The pure decision over the same population.
    let now = SystemTime::now();
    let infos: Vec<PodInfo> = pods.iter().map(|p| p.info.clone()).collect();
    let snapshot = [ClusterSnapshot {
        cluster: ClusterId("bench".into()),
        pods: infos,
        auto_register_timeout: Duration::from_secs(600),
        limits: Limits { max_pending: 10_000, max_total: 10_000 },
        pools: std::collections::BTreeMap::new(),
    }];
    let agents: Vec<AgentMetadata> = harness.gocd.agents();
    let empty = [ClusterSnapshot {
        cluster: ClusterId("bench".into()),
        pods: Vec::new(),
        auto_register_timeout: Duration::from_secs(600),
        limits: Limits { max_pending: 10_000, max_total: 10_000 },
        pools: std::collections::BTreeMap::new(),
    }];
    let mut decide = Vec::new();
    let mut decide_empty = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        std::hint::black_box(plan_ping(&empty, &[], now, true));
        decide_empty.push(t.elapsed());
        let t = Instant::now();
        let actions = plan_ping(&snapshot, &agents, now, true);
        decide.push(t.elapsed());
        assert!(actions.is_empty(), "healthy pods need no action");
    }
    let mut whole = Vec::new();
    let ping = json!({"all_cluster_profile_properties": [cluster]});
    for _ in 0..20 {
        let t = Instant::now();
        assert_eq!(harness.send("cd.go.elastic-agent.server-ping", &ping).await.unwrap().0, 200);
        whole.push(t.elapsed());
    }
    let (e_min, e_p50, e_p99) = percentiles(decide_empty);
    let (d_min, d_p50, d_p99) = percentiles(decide);
    let (w_min, w_p50, w_p99) = percentiles(whole);
    println!("\nserver-ping with {AGENTS} pods and agents:");
    println!("  {:<34} {:>11} {:>11} {:>11}", "", "min", "p50", "p99");
    println!("  {:<34} {} {} {}", "baseline: decision over 0 pods", us(e_min), us(e_p50), us(e_p99));
    println!("  {:<34} {} {} {}", "decision (plan_ping)", us(d_min), us(d_p50), us(d_p99));
    println!("  {:<34} {} {} {}", "whole request (loopback bridge)", us(w_min), us(w_p50), us(w_p99));
    println!(
        "  decision p99 {} (target < 20000 µs): {}",
        us(d_p99),
        if d_p99 < Duration::from_millis(20) { "met" } else { "MISSED" }
    );
}
