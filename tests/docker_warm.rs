//! Warm pools on the local Docker Engine: a warm pod is dind up over TLS with nothing of a
//! job in it; a job claims it, its agent container is made then in the pod's network
//! namespace and volumes with the job's key, and works like any agent; a restarted service
//! claims what the pools hold; the pools drain; nothing is left.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bollard::models::ContainerSummary;
use bollard::query_parameters::{
    ListContainersOptions, ListVolumesOptions, RemoveContainerOptions, RemoveVolumeOptions,
};
use bollard::Docker;
use gocd_dind::clock::Clock;
use gocd_dind::demo::{job_identifier, Harness};
use gocd_dind::pod::{label_keys, Binding, Ownership, PodRequest};
use gocd_dind::protocol::{JobIdentifier, Properties};
use gocd_dind::runtime::docker::DockerRuntime;
use gocd_dind::runtime::{Runtime, RuntimeError};
use gocd_dind::settings::{ClusterId, ClusterSettings, DockerConnection, ElasticSettings};
use serde_json::{json, Value};

use crate::docker_e2e::{
    assert_nothing_left, cluster, complete, harness_with, job_containers, job_id, label, label_filter, load_job_image,
    pod_slots, send, sh_ok, wait_up, Pod, Sweep,
};
use crate::support::{docker, JOB_IMAGE};

fn create_body(cluster: &Value, elastic: &Value, job_id: i64) -> Value {
    json!({
        "auto_register_key": format!("register-key-{job_id}"),
        "elastic_agent_profile_properties": elastic,
        "cluster_profile_properties": cluster,
        "environment": "warm-e2e",
        "job_identifier": job_identifier(job_id),
    })
}

async fn create(h: &Harness, cluster: &Value, elastic: &Value, job_id: i64) {
    let (status, body) = send(h, "cd.go.elastic-agent.create-agent", &create_body(cluster, elastic, job_id)).await;
    assert_eq!(status, 200, "create-agent for job {job_id}: {body}");
}

/// Containers of this GoCD server (the fake's id) on the engine.
async fn server_containers(docker: &Docker, server_id: &str) -> Vec<ContainerSummary> {
    let filters = label_filter(&[(label_keys::SERVER_ID, server_id)]);
    docker
        .list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() }))
        .await
        .expect("listing containers")
}

/// The warm pods of this server: their dind containers, which carry a pool and no job.
async fn warm_pods(docker: &Docker, server_id: &str) -> Vec<String> {
    let containers = server_containers(docker, server_id).await;
    let pods: Vec<String> = containers.iter().filter_map(|c| label(c, label_keys::POD)).map(str::to_owned).collect();
    let mut warm: Vec<String> = pods
        .iter()
        .filter(|pod| {
            let of_pod: Vec<&ContainerSummary> =
                containers.iter().filter(|c| label(c, label_keys::POD) == Some(pod.as_str())).collect();
            of_pod.iter().all(|c| label(c, label_keys::JOB_ID).is_none())
                && of_pod.iter().any(|c| label(c, label_keys::POOL).is_some())
        })
        .cloned()
        .collect();
    warm.sort();
    warm.dedup();
    warm
}

/// Removes everything of a GoCD server (the fake's id) on the engine: containers, then
/// volumes.
pub(crate) async fn remove_server(docker: &Docker, server: &str) {
    let filters: HashMap<String, Vec<String>> = label_filter(&[(label_keys::SERVER_ID, server)]);
    let options = ListContainersOptions { all: true, filters: Some(filters.clone()), ..Default::default() };
    for c in docker.list_containers(Some(options)).await.unwrap_or_default() {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        let _ = docker.remove_container(&c.id.unwrap_or_default(), Some(options)).await;
    }
    let volumes = docker.list_volumes(Some(ListVolumesOptions { filters: Some(filters) })).await;
    for v in volumes.ok().and_then(|v| v.volumes).unwrap_or_default() {
        let _ = docker.remove_volume(&v.name, Some(RemoveVolumeOptions { force: true })).await;
    }
}

/// Removes everything of a GoCD server on the engine, also when the test panicked.
struct SweepServer(String);

impl Drop for SweepServer {
    fn drop(&mut self) {
        let server = std::mem::take(&mut self.0);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let docker = Docker::connect_with_defaults().ok()?.negotiate_version().await.ok()?;
                remove_server(&docker, &server).await;
                Some(())
            })
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_claims_a_warm_pod_whose_agent_is_made_for_it_and_the_pools_survive_a_restart_and_drain() {
    let docker = docker().await;
    // The first job's pod and two warm pods at most at once.
    let _slots = pod_slots(2).await;
    let (first, second, third) = (job_id(), job_id(), job_id());
    let _sweep = Sweep(vec![first, second, third]);
    let clock = Clock::default();
    let h = harness_with(clock.clone()).await;
    let server = h.gocd.server_id();
    let _sweep_server = SweepServer(server.clone());
    let cluster = cluster();
    let elastic = json!({"WarmPoolSize": "1", "WarmPoolIdleMinutes": "5"});

    create(&h, &cluster, &elastic, first).await;
    let first_pod = wait_up(&h, &docker, first).await;
    let warm = warm_pods(&docker, &server).await;
    assert_eq!(warm.len(), 1, "the pool is filled after the first job: {warm:?}");
    let warm_pod = Pod { name: warm[0].clone(), job_id: second };
    // A warm pod: dind up over TLS, no agent container, nothing of a job.
    let containers: Vec<ContainerSummary> = server_containers(&docker, &server)
        .await
        .into_iter()
        .filter(|c| label(c, label_keys::POD) == Some(warm_pod.name.as_str()))
        .collect();
    let roles: Vec<&str> = containers.iter().filter_map(|c| label(c, label_keys::CONTAINER)).collect();
    assert_eq!(roles, ["dind"], "a warm pod has only its dind: {containers:?}");
    let dind = docker.inspect_container(&warm_pod.dind(), None).await.unwrap();
    let config = dind.config.unwrap();
    let labels = config.labels.unwrap_or_default();
    assert!(labels
        .keys()
        .all(|k| k != label_keys::JOB_ID && !k.contains("job-identifier") && !k.contains("environment")));
    let env = config.env.unwrap_or_default();
    assert!(env.iter().all(|e| !e.starts_with("GO_EA_")), "nothing of a job in dind: {env:?}");
    sh_ok(
        &docker,
        &warm_pod.dind(),
        "docker --host=tcp://127.0.0.1:2376 --tlsverify --tlscacert=/gocd-dind/tls/ca.pem --tlscert=/gocd-dind/tls/cert.pem --tlskey=/gocd-dind/tls/key.pem version",
    )
    .await;

    // The second job claims it: its agent is made now, with the job's key, in the pod.
    create(&h, &cluster, &elastic, second).await;
    let claimed = wait_up(&h, &docker, second).await;
    assert_eq!(claimed.name, warm_pod.name, "job {second} got the warm pod");
    let console = h.gocd.console_text();
    assert!(console.contains(&format!("Claimed warm pod {}", claimed.name)), "{console}");
    let agent = docker.inspect_container(&claimed.agent(), None).await.unwrap();
    let env = agent.config.unwrap().env.unwrap_or_default();
    assert!(env.contains(&format!("GO_EA_AUTO_REGISTER_KEY=register-key-{second}")), "{env:?}");
    assert!(env.contains(&"GO_EA_AUTO_REGISTER_ENVIRONMENT=warm-e2e".to_owned()));
    let properties = sh_ok(&docker, &claimed.agent(), "cat /go-working-dir/config/autoregister.properties").await;
    assert!(properties.contains(&format!("agent.auto.register.key=register-key-{second}")), "{properties}");
    assert!(properties.contains(&format!("agent.auto.register.elasticAgent.agentId={}", claimed.name)));
    let ids = sh_ok(&docker, &claimed.agent(), "id -u; id -g").await;
    assert_eq!(ids.split_whitespace().collect::<Vec<_>>(), ["1000", "0"]);
    // Its client material (made with the pod) reaches its dockerd; the workspace is the pod's.
    load_job_image(&docker, &claimed).await;
    let output = sh_ok(
        &docker,
        &claimed.agent(),
        &format!("set -e; mkdir -p /godata/w && cd /godata/w; echo claimed-{second} > f; docker run --rm -v \"$PWD\":/src {JOB_IMAGE} cat /src/f"),
    )
    .await;
    assert!(output.contains(&format!("claimed-{second}")), "{output}");
    let replacement = warm_pods(&docker, &server).await;
    assert_eq!(replacement.len(), 1, "a replacement was started: {replacement:?}");
    assert_ne!(replacement[0], claimed.name);

    // A restarted service (same GoCD server) claims from the pool it finds by labels.
    let restarted = harness_with(clock.clone()).await;
    restarted.gocd.set_server_id(&server);
    create(&restarted, &cluster, &elastic, third).await;
    let third_pod = wait_up(&restarted, &docker, third).await;
    assert_eq!(third_pod.name, replacement[0], "claimed after the restart");

    for (service, pod) in [(&h, &first_pod), (&h, &claimed), (&restarted, &third_pod)] {
        complete(service, &cluster, pod).await;
    }
    // Nobody asks for this profile any more: its pool drains by the idle rule.
    restarted.service.settle().await;
    let left = warm_pods(&docker, &server).await;
    assert_eq!(left.len(), 1, "the third job's claim started a replacement: {left:?}");
    clock.advance(Duration::from_secs(6 * 60));
    let (status, body) =
        send(&restarted, "cd.go.elastic-agent.server-ping", &json!({"all_cluster_profile_properties": [cluster]}))
            .await;
    assert_eq!(status, 200, "{body}");
    restarted.service.settle().await;
    assert!(server_containers(&docker, &server).await.is_empty(), "the pool drained");
    let drained = Pod { name: left[0].clone(), job_id: 0 };
    assert_nothing_left(&docker, &[first, second, third], &[&first_pod, &claimed, &third_pod, &drained]).await;
}

/// Unclaimed warm pods of this server by pool (the pool label on their dind).
async fn warm_by_pool(docker: &Docker, server_id: &str) -> BTreeMap<String, BTreeSet<String>> {
    let warm = warm_pods(docker, server_id).await;
    let mut pools: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in server_containers(docker, server_id).await {
        if let (Some(pod), Some(pool)) = (label(&c, label_keys::POD), label(&c, label_keys::POOL)) {
            if warm.iter().any(|w| w == pod) {
                pools.entry(pool.to_owned()).or_default().insert(pod.to_owned());
            }
        }
    }
    pools
}

/// How many pods of this server are on the engine (a warm pod is only its dind).
async fn pods_on_engine(docker: &Docker, server_id: &str) -> usize {
    let containers = server_containers(docker, server_id).await;
    containers.iter().filter_map(|c| label(c, label_keys::POD)).collect::<BTreeSet<_>>().len()
}

/// The job's pod, checked to be the only one whose containers carry the job's label.
async fn only_pod_of(h: &Harness, docker: &Docker, job_id: i64) -> Pod {
    let pod = wait_up(h, docker, job_id).await;
    let labelled: BTreeSet<String> = job_containers(docker, job_id)
        .await
        .iter()
        .filter_map(|c| label(c, label_keys::POD))
        .map(str::to_owned)
        .collect();
    assert_eq!(labelled, BTreeSet::from([pod.name.clone()]), "job {job_id} has one pod");
    pod
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_jobs_of_two_pools_on_the_engine_each_get_a_never_used_pod_within_the_limits() {
    const LIMIT: usize = 5;
    let docker = docker().await;
    // Up to five pods at once: the whole ration, so no other pod test runs beside it.
    let _slots = pod_slots(2).await;
    let jobs: Vec<i64> = (0..7).map(|_| job_id()).collect();
    let _sweep = Sweep(jobs.clone());
    let clock = Clock::default();
    let h = harness_with(clock.clone()).await;
    let server = h.gocd.server_id();
    let _sweep_server = SweepServer(server.clone());
    let mut cluster = cluster();
    cluster["max_running_agents"] = json!(LIMIT.to_string());
    cluster["max_pending_agents"] = json!(LIMIT.to_string());
    let a = json!({"WarmPoolSize": "2"});
    let b = json!({"WarmPoolSize": "1", "Environment": "TEAM=b"});
    let mut pod_jobs: BTreeMap<String, i64> = BTreeMap::new();
    let mut serve = |pod: &Pod| {
        assert!(pod_jobs.insert(pod.name.clone(), pod.job_id).is_none(), "{} pod_jobs a second job", pod.name);
    };
    let within_limit = |pods: usize| assert!(pods <= LIMIT, "{pods} pods on the engine, limit {LIMIT}");

    // Two first jobs start cold and fill their pools: 2 + 1 warm pods, 5 pods in all.
    futures_util::future::join(create(&h, &cluster, &a, jobs[0]), create(&h, &cluster, &b, jobs[1])).await;
    let first = [only_pod_of(&h, &docker, jobs[0]).await, only_pod_of(&h, &docker, jobs[1]).await];
    h.service.settle().await;
    let pools = warm_by_pool(&docker, &server).await;
    let sizes: BTreeSet<usize> = pools.values().map(BTreeSet::len).collect();
    assert_eq!(sizes, BTreeSet::from([1, 2]), "both pools filled: {pools:?}");
    let pool_a = pools.iter().find(|(_, pods)| pods.len() == 2).map(|(pool, _)| pool.clone()).unwrap();
    for pod in &first {
        serve(pod);
        complete(&h, &cluster, pod).await;
    }
    h.service.settle().await;
    let warm_before: BTreeSet<String> = warm_pods(&docker, &server).await.into_iter().collect();
    assert_eq!(warm_before.len(), 3);

    // Three jobs at once (two of A, one of B), each create-agent sent twice as GoCD
    // re-sends it: each claims a warm pod of its pool, no pod twice.
    let burst = [(jobs[2], &a), (jobs[3], &a), (jobs[4], &b)];
    let sends = burst.iter().chain(&burst).map(|(job, profile)| create(&h, &cluster, profile, *job));
    futures_util::future::join_all(sends).await;
    h.service.settle().await;
    let mut claimed = Vec::new();
    for (job, _) in burst {
        let pod = only_pod_of(&h, &docker, job).await;
        assert!(warm_before.contains(&pod.name), "job {job} claimed a warm pod, got {}", pod.name);
        serve(&pod);
        claimed.push(pod);
    }
    within_limit(pods_on_engine(&docker, &server).await);
    let console = h.gocd.console_text();
    assert_eq!(console.matches("Claimed warm pod").count(), 3, "{console}");
    for pod in &claimed {
        complete(&h, &cluster, pod).await;
    }
    h.service.settle().await;

    // A restarted service claims from what the pools hold; a changed profile gets no
    // stale pod.
    let restarted = harness_with(clock.clone()).await;
    restarted.gocd.set_server_id(&server);
    let a_ready = warm_by_pool(&docker, &server).await.remove(&pool_a).unwrap_or_default();
    create(&restarted, &cluster, &a, jobs[5]).await;
    let after_restart = only_pod_of(&restarted, &docker, jobs[5]).await;
    assert_eq!(a_ready.contains(&after_restart.name), !a_ready.is_empty(), "warm whenever A had one: {a_ready:?}");
    serve(&after_restart);
    let warm_now: BTreeSet<String> = warm_pods(&docker, &server).await.into_iter().collect();
    let b_changed = json!({"WarmPoolSize": "1", "Environment": "TEAM=b2"});
    create(&restarted, &cluster, &b_changed, jobs[6]).await;
    let changed = only_pod_of(&restarted, &docker, jobs[6]).await;
    assert!(!warm_now.contains(&changed.name), "a changed profile got a pod of the old pool");
    serve(&changed);
    within_limit(pods_on_engine(&docker, &server).await);
    for pod in [&after_restart, &changed] {
        complete(&restarted, &cluster, pod).await;
    }

    // Nobody asks for a while: every pool drains, nothing is left.
    restarted.service.settle().await;
    clock.advance(Duration::from_secs(31 * 60));
    let ping = json!({"all_cluster_profile_properties": [cluster]});
    let (status, body) = send(&restarted, "cd.go.elastic-agent.server-ping", &ping).await;
    assert_eq!(status, 200, "{body}");
    restarted.service.settle().await;
    let left = server_containers(&docker, &server).await;
    assert!(left.is_empty(), "the pools drained: {:?}", left.iter().map(|c| &c.names).collect::<Vec<_>>());
    let pods: Vec<Pod> = pod_jobs.iter().map(|(name, job)| Pod { name: name.clone(), job_id: *job }).collect();
    assert_eq!(pods.len(), jobs.len(), "seven jobs, seven pods");
    assert_nothing_left(&docker, &jobs, &pods.iter().collect::<Vec<_>>()).await;
}

/// The claim job `job_id` of profile `elastic` makes of `owner`'s warm pod `pod` (no TLS material:
/// the warm pod has its own), as the service builds it.
fn claim_of(pod: &str, owner: &Ownership, elastic: &Value, job_id: i64) -> gocd_dind::pod::AgentPod {
    let props = |v: &Value| serde_json::from_value::<Properties>(v.clone()).unwrap();
    let settings = ClusterSettings::parse(&props(&cluster()), false).unwrap();
    let elastic = ElasticSettings::parse(&props(elastic)).unwrap();
    let job = JobIdentifier { job_id, ..JobIdentifier::default() };
    let binding = Binding::Job { job: &job, environment: None, auto_register_key: "register-key" };
    let request = PodRequest {
        name: pod,
        ownership: owner,
        go_server_url: "https://127.0.0.1:8154/go",
        cluster: &settings,
        elastic: &elastic,
        binding,
        tls: None,
    };
    gocd_dind::pod::build(&request).unwrap()
}

/// Two claims of one warm pod, as two services sharing the engine would make them: the
/// engine binds it once (the pod's agent container can be created once), and the loser
/// is told it lost the race, not that the pod cannot be claimed, so it leaves the pod to
/// the winner's job.
#[tokio::test(flavor = "multi_thread")]
async fn the_engine_binds_a_warm_pod_once_and_the_second_claim_is_told_it_lost() {
    let docker = docker().await;
    let _slots = pod_slots(2).await;
    let (first, second, third) = (job_id(), job_id(), job_id());
    let _sweep = Sweep(vec![first, second, third]);
    let h = harness_with(Clock::default()).await;
    let server = h.gocd.server_id();
    let _sweep_server = SweepServer(server.clone());
    let elastic = json!({"WarmPoolSize": "1"});
    create(&h, &cluster(), &elastic, first).await;
    wait_up(&h, &docker, first).await;
    h.service.settle().await;
    let warm = warm_pods(&docker, &server).await;
    assert_eq!(warm.len(), 1, "{warm:?}");
    let pod = Pod { name: warm[0].clone(), job_id: second };
    let dind = docker.inspect_container(&pod.dind(), None).await.unwrap();
    let labels = dind.config.unwrap().labels.unwrap_or_default();
    let owner = Ownership::new(&labels[label_keys::SERVER_ID], ClusterId(labels[label_keys::CLUSTER].clone()));

    let runtime = DockerRuntime::new(DockerConnection::default());
    let (won, lost) = futures_util::future::join(
        runtime.claim_pod(&owner, &claim_of(&pod.name, &owner, &elastic, second)),
        runtime.claim_pod(&owner, &claim_of(&pod.name, &owner, &elastic, third)),
    )
    .await;
    let outcomes = [&won, &lost];
    assert_eq!(outcomes.iter().filter(|r| r.is_ok()).count(), 1, "bound once: {won:?} / {lost:?}");
    let loser = outcomes.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert!(matches!(loser, RuntimeError::AlreadyClaimed(_)), "the loser is told it lost: {loser}");
    let agents: Vec<ContainerSummary> = server_containers(&docker, &server)
        .await
        .into_iter()
        .filter(|c| label(c, label_keys::POD) == Some(pod.name.as_str()))
        .filter(|c| label(c, label_keys::CONTAINER) == Some("agent"))
        .collect();
    assert_eq!(agents.len(), 1, "one agent container in the pod");
}
