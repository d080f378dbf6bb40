//! Warm pools on the local Docker Engine: a warm pod is dind up over TLS with nothing of a
//! job in it; a job claims it, its agent container is made then in the pod's network
//! namespace and volumes with the job's key, and works like any agent; a restarted service
//! claims what the pools hold; the pools drain; nothing is left.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::ContainerSummary;
use bollard::query_parameters::{
    ListContainersOptions, ListVolumesOptions, RemoveContainerOptions, RemoveVolumeOptions,
};
use bollard::Docker;
use gocd_dind::clock::Clock;
use gocd_dind::demo::{job_identifier, Harness};
use gocd_dind::pod::label_keys;
use serde_json::{json, Value};

use crate::docker_e2e::{
    assert_nothing_left, cluster, complete, harness_with, job_id, label, label_filter, load_job_image, pod_slots, send,
    sh_ok, wait_up, Pod, Sweep,
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
