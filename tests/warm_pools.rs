//! Warm pools through the real router against the in-memory runtime: GoCD-shaped
//! sequences of create-agent, should-assign-work, job-completion and server-ping. Every
//! job gets a pod no job had before, a warm one when its pool has one up; no pod serves
//! two jobs; the limits hold; pools refill on demand and drain when idle.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use gocd_dind::listing::PodPhase;
use gocd_dind::pod::{label_keys, secret_key};
use gocd_dind::runtime::memory::Claim;
use gocd_dind::settings::PoolId;
use serde_json::{json, Value};

use crate::lifecycle::job;
use crate::support::{memory_cluster, memory_harness, MemoryHarness};

fn body(cluster: &Value, elastic: &Value, job_id: i64) -> Value {
    json!({
        "auto_register_key": format!("key-{job_id}"),
        "elastic_agent_profile_properties": elastic,
        "cluster_profile_properties": cluster,
        "environment": "prod",
        "job_identifier": job(job_id),
    })
}

async fn send(h: &MemoryHarness, request: &str, body: &Value) {
    let (status, answer) = h.harness.send(request, body).await.unwrap();
    assert_eq!(status, 200, "{request}: {answer}");
}

/// The unclaimed warm pods.
fn warm(h: &MemoryHarness) -> Vec<String> {
    h.runtime.pods().into_iter().filter(|p| p.info.warm.is_some()).map(|p| p.info.name).collect()
}

/// The pod serving `job_id`, once its start has run.
fn pod_of(h: &MemoryHarness, job_id: i64) -> String {
    let pods = h.runtime.pods();
    let serving: Vec<_> = pods.iter().filter(|p| p.info.warm.is_none() && p.info.job_id == job_id).collect();
    assert_eq!(serving.len(), 1, "job {job_id} has one pod; console:\n{}", h.harness.gocd.console_text());
    assert_eq!(serving[0].info.phase, PodPhase::Running);
    serving[0].info.name.clone()
}

/// Warm pods up in the pool of the job's profiles.
fn ready_in_pool(h: &MemoryHarness, cluster: &Value, elastic: &Value) -> usize {
    let props = |v: &Value| serde_json::from_value(v.clone()).unwrap();
    let pool = PoolId::of(&props(cluster), &props(elastic), "https://gocd.example.com/go");
    h.runtime
        .pods()
        .iter()
        .filter(|p| p.info.phase == PodPhase::Running && p.info.warm.as_ref().is_some_and(|w| w.pool == pool))
        .count()
}

async fn assign(h: &MemoryHarness, cluster: &Value, agent: &str, job_id: i64) -> bool {
    let body = json!({"agent": {"agent_id": agent, "agent_state": "Idle", "build_state": "Idle", "config_state": "Enabled"}, "job_identifier": job(job_id), "cluster_profile_properties": cluster, "elastic_agent_profile_properties": {}, "environment": "prod"});
    let (status, answer) = h.harness.send("cd.go.elastic-agent.should-assign-work", &body).await.unwrap();
    assert_eq!(status, 200);
    serde_json::from_str(&answer).unwrap()
}

async fn ping(h: &MemoryHarness, cluster: &Value) {
    send(h, "cd.go.elastic-agent.server-ping", &json!({"all_cluster_profile_properties": [cluster]})).await;
    h.harness.service.settle().await;
}

/// The agent registers, gets its job (and no other), builds, and the job completes.
async fn run_to_completion(h: &MemoryHarness, cluster: &Value, pod: &str, job_id: i64) {
    h.harness.gocd.set_agent(pod, "Idle", "Enabled");
    assert!(assign(h, cluster, pod, job_id).await, "{pod} gets job {job_id}");
    assert!(!assign(h, cluster, pod, job_id + 1000).await, "{pod} gets no other job");
    h.harness.gocd.set_agent(pod, "Building", "Enabled");
    let completion = json!({"elastic_agent_id": pod, "job_identifier": job(job_id), "cluster_profile_properties": cluster, "elastic_agent_profile_properties": {}});
    send(h, "cd.go.elastic-agent.job-completion", &completion).await;
    h.harness.service.settle().await;
    assert!(h.runtime.pods().iter().all(|p| p.info.name != pod), "{pod} is removed after its job");
}

#[tokio::test]
async fn a_job_claims_a_warm_pod_with_nothing_of_a_job_in_it_and_the_pool_refills() {
    let h = memory_harness().await;
    let cluster = memory_cluster(&[]);
    let elastic = json!({"WarmPoolSize": "2", "PrePullImages": "busybox:1.36"});
    send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, &elastic, 1)).await;
    h.harness.service.settle().await;
    let first = pod_of(&h, 1);
    let warm_pods = warm(&h);
    assert_eq!(warm_pods.len(), 2, "the first job's profile fills its pool");
    assert!(h.runtime.claims().is_empty(), "the pool was empty when the first job asked");
    for stored in h.runtime.pods().into_iter().filter(|p| p.info.warm.is_some()) {
        let labels = stored.pod.pod.metadata.labels.clone().unwrap();
        assert!(!labels.contains_key(label_keys::JOB_ID), "no job label on a warm pod");
        assert!(labels.contains_key(label_keys::POOL));
        assert!(stored.pod.pod.metadata.annotations.clone().unwrap_or_default().is_empty(), "no job annotations");
        let data = stored.pod.secret.data.clone().unwrap();
        assert!(!data.contains_key(secret_key::AUTO_REGISTER_KEY), "no register key in a warm pod");
        assert!(data.contains_key(secret_key::SERVER_KEY), "its own TLS material");
        let agent = &stored.pod.pod.spec.as_ref().unwrap().containers[0];
        let env: Vec<&str> = agent.env.iter().flatten().map(|e| e.name.as_str()).collect();
        assert!(
            !env.contains(&"GO_EA_AUTO_REGISTER_KEY") && !env.contains(&"GO_EA_AUTO_REGISTER_ENVIRONMENT"),
            "{env:?}"
        );
    }
    let pulls: Vec<(String, String)> =
        h.runtime.dind_commands().into_iter().map(|(pod, command)| (pod, command.last().cloned().unwrap())).collect();
    let pulled: BTreeSet<&str> = pulls.iter().map(|(pod, _)| pod.as_str()).collect();
    assert_eq!(pulled, warm_pods.iter().map(String::as_str).collect(), "each warm pod pulled its image");
    assert!(pulls.iter().all(|(_, image)| image == "busybox:1.36"));

    send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, &elastic, 2)).await;
    h.harness.service.settle().await;
    let second = pod_of(&h, 2);
    assert!(warm_pods.contains(&second), "job 2 got a warm pod: {second} of {warm_pods:?}");
    assert_eq!(h.runtime.claims(), [Claim { pod: second.clone(), job_id: 2 }]);
    assert_eq!(warm(&h).len(), 2, "a replacement was started");
    assert_eq!(h.runtime.created_total(), 4);
    let claimed = h.runtime.pods().into_iter().find(|p| p.info.name == second).unwrap();
    let key = &claimed.pod.secret.data.as_ref().unwrap()[secret_key::AUTO_REGISTER_KEY];
    assert_eq!(key.0, b"key-2", "the job's own key reached the claimed pod");
    let console = h.harness.gocd.console_text();
    assert!(console.contains(&format!("Claimed warm pod {second}")), "{console}");
    // Re-sent create-agent for a job that has its pod: nothing more.
    send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, &elastic, 2)).await;
    h.harness.service.settle().await;
    assert_eq!((h.runtime.claims().len(), h.runtime.created_total()), (1, 4));

    run_to_completion(&h, &cluster, &second, 2).await;
    run_to_completion(&h, &cluster, &first, 1).await;
    assert_eq!(warm(&h).len(), 2, "the pool stays warm between jobs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_create_agent_for_one_job_claims_one_warm_pod() {
    let h = memory_harness().await;
    let cluster = memory_cluster(&[]);
    let elastic = json!({"WarmPoolSize": "3"});
    send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, &elastic, 1)).await;
    h.harness.service.settle().await;
    assert_eq!(warm(&h).len(), 3);
    // Claims wait too while creations are held: every request below finds the claim in
    // progress.
    h.runtime.hold_creates();
    let request = body(&cluster, &elastic, 2);
    let sends = (0..5).map(|_| h.harness.send("cd.go.elastic-agent.create-agent", &request));
    for (status, answer) in futures_util::future::join_all(sends).await.into_iter().map(Result::unwrap) {
        assert_eq!(status, 200, "{answer}");
    }
    h.runtime.release_creates();
    h.harness.service.settle().await;
    assert_eq!(h.runtime.claims().len(), 1, "{:?}", h.runtime.claims());
    pod_of(&h, 2);
}

#[tokio::test]
async fn a_failed_pre_pull_is_told_to_the_claiming_job_and_a_failed_claim_falls_back_to_a_new_pod() {
    let h = memory_harness().await;
    let cluster = memory_cluster(&[]);
    h.runtime.fail_pulls_of("registry.example.com/missing:1");
    let elastic = json!({"WarmPoolSize": "1", "PrePullImages": "busybox:1.36\nregistry.example.com/missing:1"});
    send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, &elastic, 1)).await;
    h.harness.service.settle().await;
    send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, &elastic, 2)).await;
    h.harness.service.settle().await;
    let claimed = pod_of(&h, 2);
    assert_eq!(
        h.runtime.claims(),
        [Claim { pod: claimed.clone(), job_id: 2 }],
        "a pull failure is never fatal to the claim"
    );
    let console = h.harness.gocd.console_text();
    assert!(
        console.contains("could not pre-pull an image when it was made, so the job pulls it itself: registry.example.com/missing:1: docker pull exited with 1: Error response from daemon: manifest for registry.example.com/missing:1 not found"),
        "{console}"
    );
    assert!(!console.contains("busybox:1.36:"), "only the failure is told");
    // The job's agent page (GoCD's agent status report) tells it too, with no secret.
    let (status, report) = h
        .harness
        .send(
            "cd.go.elastic-agent.agent-status-report",
            &json!({"cluster_profile_properties": cluster, "job_identifier": job(2), "elastic_agent_id": claimed}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{report}");
    let page: String = serde_json::from_str::<Value>(&report).unwrap()["view"].as_str().unwrap().to_owned();
    assert!(page.contains(&format!("Warm pod {claimed} could not pre-pull these images when it was made")), "{page}");
    assert!(
        page.contains("<li>registry.example.com/missing:1: docker pull exited with 1: Error response from daemon: manifest for registry.example.com/missing:1 not found: manifest unknown</li>"),
        "{page}"
    );
    assert!(!page.contains("busybox:1.36:"), "only the failure is told: {page}");
    assert!(!page.contains("key-2"), "never the job's register key: {page}");
    // The status page shows the pool, its warm pod (the replacement) and what it could not
    // pre-pull, and counts the warm pod against the limits; no pod with "job id 0".
    let (status, report) = h
        .harness
        .send("cd.go.elastic-agent.plugin-status-report", &json!({"all_cluster_profiles_properties": [cluster]}))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let page: String = serde_json::from_str::<Value>(&report).unwrap()["view"].as_str().unwrap().to_owned();
    let replacement = warm(&h).pop().expect("the pool was refilled after the claim");
    assert!(page.contains("<h4>Warm pools</h4>") && page.contains(&replacement), "{page}");
    assert!(page.contains("size 1, idle 30 min") && page.contains("registry.example.com/missing:1"), "{page}");
    assert!(page.contains(&format!("Warm pod {replacement} could not pre-pull")), "{page}");
    assert!(page.contains("<span>warm 1</span>") && !page.contains("job id 0"), "{page}");

    h.runtime.fail_claims_with(Some("the warm pod's dockerd is gone"));
    let before = warm(&h);
    assert_eq!(before.len(), 1);
    send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, &elastic, 3)).await;
    h.harness.service.settle().await;
    let fresh = pod_of(&h, 3);
    assert!(!before.contains(&fresh), "the job got a pod made for it");
    assert!(h.runtime.pods().iter().all(|p| p.info.name != before[0]), "the warm pod whose claim failed is gone");
    let console = h.harness.gocd.console_text();
    assert!(console.contains(&format!("Claiming warm pod {} failed", before[0])), "{console}");
}

#[tokio::test]
async fn a_job_held_back_only_by_another_pools_warm_pods_takes_the_place_of_one() {
    let h = memory_harness().await;
    let cluster = memory_cluster(&[("max_running_agents", "3"), ("max_pending_agents", "3")]);
    let a = json!({"WarmPoolSize": "2"});
    let b = json!({"Image": "gocd/gocd-agent-wolfi:v25.4.0-b"});
    send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, &a, 1)).await;
    h.harness.service.settle().await;
    let a_warm = warm(&h);
    assert_eq!(a_warm.len(), 2, "3 pods: job 1's and two warm");
    send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, &b, 2)).await;
    h.harness.service.settle().await;
    pod_of(&h, 2);
    let left = warm(&h);
    assert_eq!(left.len(), 1, "one warm pod made room");
    assert_eq!(h.runtime.pods().len(), 3);
    assert!(h.runtime.peak() <= 3, "never above max_running_agents: peak {}", h.runtime.peak());
    assert!(!h.harness.gocd.console_text().contains("Not creating an agent pod yet"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gocd_shaped_sequence_never_reuses_a_pod_and_leaves_nothing_once_the_pools_drain() {
    const MAX_TOTAL: usize = 6;
    let h = memory_harness().await;
    let cluster = memory_cluster(&[("max_running_agents", "6"), ("max_pending_agents", "5")]);
    let a = json!({"WarmPoolSize": "2", "PrePullImages": "busybox:1.36"});
    let b = json!({"WarmPoolSize": "1", "Image": "gocd/gocd-agent-wolfi:v25.4.0-b"});
    let mut served: BTreeMap<String, i64> = BTreeMap::new();
    let mut record = |pod: String, job_id: i64| {
        assert!(served.insert(pod.clone(), job_id).is_none(), "{pod} served a second job ({job_id})");
    };

    // Four jobs at once, each create-agent sent twice as GoCD re-sends it.
    let jobs = [(1, &a), (2, &b), (3, &a), (4, &b)];
    let bodies: Vec<Value> = jobs.iter().map(|(id, profile)| body(&cluster, profile, *id)).collect();
    let sends = bodies.iter().chain(&bodies).map(|b| h.harness.send("cd.go.elastic-agent.create-agent", b));
    futures_util::future::join_all(sends).await;
    h.harness.service.settle().await;
    let round: Vec<(i64, String)> = jobs.iter().map(|(id, _)| (*id, pod_of(&h, *id))).collect();
    for (id, pod) in &round {
        record(pod.clone(), *id);
    }
    for (id, pod) in round {
        run_to_completion(&h, &cluster, &pod, id).await;
    }

    // One after another: a job claims a warm pod whenever its pool has one up (the
    // limits may have kept a pool short when the four jobs came at once).
    let mut warm_starts = 0;
    for id in 5..=10 {
        let profile = if id % 2 == 0 { &a } else { &b };
        let claims_before = h.runtime.claims().len();
        let ready = ready_in_pool(&h, &cluster, profile);
        send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, profile, id)).await;
        h.harness.service.settle().await;
        let pod = pod_of(&h, id);
        let claimed = h.runtime.claims().len() - claims_before;
        assert_eq!(claimed, usize::from(ready > 0), "job {id}: {ready} warm pods of its pool were up");
        warm_starts += claimed;
        record(pod.clone(), id);
        run_to_completion(&h, &cluster, &pod, id).await;
    }
    assert!(warm_starts >= 5, "the pools stay warm between jobs: {warm_starts} of 6 warm");

    // A changed profile names another pool: its first job gets no stale pod.
    let b_changed =
        json!({"WarmPoolSize": "1", "Image": "gocd/gocd-agent-wolfi:v25.4.0-b", "Environment": "TEAM=blue"});
    let claims_before = h.runtime.claims().len();
    send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, &b_changed, 11)).await;
    h.harness.service.settle().await;
    let pod = pod_of(&h, 11);
    assert_eq!(h.runtime.claims().len(), claims_before, "no pod of the old profile's pool");
    record(pod.clone(), 11);
    run_to_completion(&h, &cluster, &pod, 11).await;

    // A restarted service finds the pools by their labels and claims from them.
    let h = h.another_service().await;
    let claims_before = h.runtime.claims().len();
    send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, &a, 12)).await;
    h.harness.service.settle().await;
    let pod = pod_of(&h, 12);
    assert_eq!(h.runtime.claims().len(), claims_before + 1, "claimed after the restart");
    record(pod.clone(), 12);
    run_to_completion(&h, &cluster, &pod, 12).await;

    // Nobody asks for a while: every pool drains by the idle rule, old profile's too.
    assert!(!warm(&h).is_empty());
    h.clock.advance(Duration::from_secs(29 * 60));
    ping(&h, &cluster).await;
    assert!(!warm(&h).is_empty(), "not idle yet");
    h.clock.advance(Duration::from_secs(2 * 60));
    ping(&h, &cluster).await;
    assert!(
        h.runtime.pods().is_empty(),
        "nothing left: {:?}",
        h.runtime.pods().iter().map(|p| &p.info).collect::<Vec<_>>()
    );
    // The drained warm pods are among the recently gone pods, as warm pods of no job.
    let (_, report) = h
        .harness
        .send("cd.go.elastic-agent.plugin-status-report", &json!({"all_cluster_profiles_properties": [cluster]}))
        .await
        .unwrap();
    let page = serde_json::from_str::<Value>(&report).unwrap()["view"].as_str().unwrap().to_owned();
    assert!(page.contains("(a warm pod: no job claimed it)") && page.contains("WarmPoolIdleMinutes"), "{page}");
    assert!(!page.contains("job_id=0"), "no agent page of a warm pod of no job: {page}");

    let claims = h.runtime.claims();
    let claimed: BTreeSet<&str> = claims.iter().map(|c| c.pod.as_str()).collect();
    assert_eq!(claimed.len(), claims.len(), "no warm pod claimed twice: {claims:?}");
    assert_eq!(served.len(), 12, "twelve jobs, twelve pods");
    assert!(h.runtime.peak() <= MAX_TOTAL, "max_running_agents held: peak {}", h.runtime.peak());
}

#[tokio::test]
async fn profiles_that_build_the_same_pods_share_a_pool_and_one_without_a_pool_never_drains_it() {
    let h = memory_harness().await;
    let cluster = memory_cluster(&[]);
    let with_pool = json!({"WarmPoolSize": "2"});
    let without = json!({});
    send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, &with_pool, 1)).await;
    h.harness.service.settle().await;
    assert_eq!(warm(&h).len(), 2);
    // A job of the profile without a pool builds the same pod: it claims one.
    send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, &without, 2)).await;
    h.harness.service.settle().await;
    assert_eq!(h.runtime.claims().len(), 1, "claimed from the shared pool");
    assert_eq!(warm(&h).len(), 1, "its profile keeps no pool, so it does not refill it");
    ping(&h, &cluster).await;
    assert_eq!(warm(&h).len(), 1, "nor does its 0 drain the other profile's pool");
    send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, &with_pool, 3)).await;
    h.harness.service.settle().await;
    assert_eq!(warm(&h).len(), 2, "a job of the profile with the pool refills it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_that_loses_the_race_for_a_warm_pod_leaves_it_to_the_winners_job() {
    let h = memory_harness().await;
    let cluster = memory_cluster(&[]);
    let elastic = json!({"WarmPoolSize": "1"});
    send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, &elastic, 1)).await;
    h.harness.service.settle().await;
    let [contested] = <[String; 1]>::try_from(warm(&h)).unwrap();
    let other = h.another_service().await;
    // Both services see the same warm pod up and claim it, each for its own job; the
    // claims wait together, then race.
    h.runtime.hold_creates();
    send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, &elastic, 2)).await;
    send(&other, "cd.go.elastic-agent.create-agent", &body(&cluster, &elastic, 3)).await;
    h.runtime.release_creates();
    h.harness.service.settle().await;
    other.harness.service.settle().await;
    h.harness.service.settle().await;

    // The loser is placed again: a new pod, or a warm pod made since (a refill).
    let claims = h.runtime.claims();
    let of_contested: Vec<&Claim> = claims.iter().filter(|c| c.pod == contested).collect();
    assert_eq!(of_contested.len(), 1, "one claim binds the pod: {claims:?}");
    let claimed: BTreeSet<&str> = claims.iter().map(|c| c.pod.as_str()).collect();
    assert_eq!(claimed.len(), claims.len(), "no warm pod claimed twice: {claims:?}");
    let winner = of_contested[0].job_id;
    let loser = if winner == 2 { 3 } else { 2 };
    assert_eq!(pod_of(&h, winner), contested, "the winner's job keeps its pod");
    let fresh = pod_of(&h, loser);
    assert_ne!(fresh, contested, "the loser's job got a pod of its own");
    let loser_console = if loser == 2 { h.harness.gocd.console_text() } else { other.harness.gocd.console_text() };
    assert!(
        loser_console.contains(&format!("Warm pod {contested} was claimed by another job first")),
        "{loser_console}"
    );
    assert!(!loser_console.contains("Claiming warm pod"), "not told as a failed claim: {loser_console}");
}

#[tokio::test]
async fn a_warm_pod_whose_claim_and_removal_failed_stays_counted_and_is_removed_by_server_ping() {
    let h = memory_harness().await;
    let cluster = memory_cluster(&[("max_running_agents", "3")]);
    let elastic = json!({"WarmPoolSize": "1"});
    send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, &elastic, 1)).await;
    h.harness.service.settle().await;
    let [failing] = <[String; 1]>::try_from(warm(&h)).unwrap();
    // The claim binds the pod to job 2 and then fails (a Kubernetes exec that fails after
    // the bind patch); removing the pod fails too.
    h.runtime.fail_claims_with(Some("handing its agent the job failed"));
    h.runtime.fail_deletes_with(Some("the engine refused the removal"));
    send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, &elastic, 2)).await;
    h.harness.service.settle().await;
    h.runtime.fail_claims_with(None);
    assert!(h.runtime.pods().iter().any(|p| p.info.name == failing), "its removal failed");
    let fresh: Vec<String> = h
        .runtime
        .pods()
        .into_iter()
        .filter(|p| p.info.job_id == 2 && p.info.name != failing)
        .map(|p| p.info.name)
        .collect();
    assert_eq!(fresh.len(), 1, "job 2 got a pod of its own: {fresh:?}");
    assert!(h.runtime.peak() <= 3, "the pod left behind counts against max_running_agents: peak {}", h.runtime.peak());

    // A listing shows the failed pod bound to job 2: it still never gets the job.
    ping(&h, &cluster).await;
    assert!(h.runtime.pods().iter().any(|p| p.info.name == failing), "server-ping's removal failed too");
    assert!(!assign(&h, &cluster, &failing, 2).await, "the pod whose claim failed never gets the job");

    h.runtime.fail_deletes_with(None);
    ping(&h, &cluster).await;
    assert!(h.runtime.pods().iter().all(|p| p.info.name != failing), "server-ping retried the removal");
    assert!(h.runtime.peak() <= 3, "peak {}", h.runtime.peak());
    // Its post-mortem says why it went, not that it was beyond its pool's size.
    let report = json!({"all_cluster_profiles_properties": [cluster]});
    let (_, report) = h.harness.send("cd.go.elastic-agent.plugin-status-report", &report).await.unwrap();
    let page = serde_json::from_str::<Value>(&report).unwrap()["view"].as_str().unwrap().to_owned();
    assert!(page.contains("whose earlier removal did not finish"), "{page}");
}

#[tokio::test]
async fn a_job_whose_eviction_failed_waits_at_the_limit_instead_of_breaking_it() {
    let h = memory_harness().await;
    let cluster = memory_cluster(&[("max_running_agents", "3"), ("max_pending_agents", "3")]);
    let a = json!({"WarmPoolSize": "2"});
    let b = json!({"Image": "gocd/gocd-agent-wolfi:v25.4.0-b"});
    send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, &a, 1)).await;
    h.harness.service.settle().await;
    assert_eq!(warm(&h).len(), 2, "3 pods: job 1's and two warm");
    h.runtime.fail_deletes_with(Some("the engine refused the removal"));
    send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, &b, 2)).await;
    h.harness.service.settle().await;
    assert!(h.runtime.pods().iter().all(|p| p.info.job_id != 2), "no pod for job 2 beyond the limit");
    assert_eq!(h.runtime.peak(), 3, "max_running_agents held");
    let console = h.harness.gocd.console_text();
    assert!(
        console.contains("Not creating an agent pod yet: 3 agent pods exist (max_running_agents = 3)"),
        "{console}"
    );

    // One failed eviction is enough: the job waits rather than take the other warm pod
    // too. The removal works again: server-ping removes the warm pod left leaving, and
    // GoCD's next create-agent for the job gets its place.
    h.runtime.fail_deletes_with(None);
    ping(&h, &cluster).await;
    assert_eq!(warm(&h).len(), 1, "only the pod whose eviction failed went: {:?}", warm(&h));
    send(&h, "cd.go.elastic-agent.create-agent", &body(&cluster, &b, 2)).await;
    h.harness.service.settle().await;
    pod_of(&h, 2);
    assert_eq!(h.runtime.peak(), 3, "max_running_agents held");
}
