//! The project's own registry (Debian's docker-registry, `.ci/registry-up.sh`) with real
//! pods on the local engine: pre-pulled images are in a claimed warm pod's daemon before
//! its job runs anything; a cold pod's `docker pull` goes through the mirror (Docker Hub
//! is out of reach here, so nothing else could serve it); and the workflow every user
//! has: a job builds an image from its workspace, pushes it, and a later job in another
//! pod pulls and runs it.

use bollard::query_parameters::LogsOptions;
use bollard::Docker;
use futures_util::StreamExt;
use gocd_dind::demo::{job_identifier, Harness};
use serde_json::{json, Value};

use crate::docker_e2e::{
    assert_nothing_left, bridge_ip, cluster, complete, harness_with, job_id, pod_slots, send, sh_ok, wait_up, Pod,
    Sweep,
};
use crate::support::{docker, registry};

/// The image `.ci/registry-up.sh` pushes to the origin (the Debian base, ~117 MB), named
/// as a Docker Hub image so dockerd asks the mirror for it.
const HUB_IMAGE: &str = "gocd-dind-test/job:1";

fn body(cluster: &Value, elastic: &Value, job: i64) -> Value {
    json!({
        "auto_register_key": format!("key-{job}"),
        "elastic_agent_profile_properties": elastic,
        "cluster_profile_properties": cluster,
        "job_identifier": job_identifier(job),
    })
}

async fn create(h: &Harness, cluster: &Value, elastic: &Value, job: i64) {
    let (status, answer) = send(h, "cd.go.elastic-agent.create-agent", &body(cluster, elastic, job)).await;
    assert_eq!(status, 200, "{answer}");
}

/// The mirror's access log since `since` (seconds since the epoch).
async fn mirror_log(docker: &Docker, since: i32) -> String {
    let options = LogsOptions { stdout: true, stderr: true, since, ..Default::default() };
    let mut stream = docker.logs("gocd-dind-test-mirror", Some(options));
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.expect("the mirror's log").into_bytes()));
    }
    text
}

/// The pod's address on the engine's bridge (its dind owns the network namespace).
async fn pod_ip(docker: &Docker, pod: &Pod) -> String {
    bridge_ip(docker, &pod.dind()).await
}

fn now() -> i32 {
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    i32::try_from(seconds).unwrap() - 1
}

#[tokio::test(flavor = "multi_thread")]
async fn pre_pulled_images_are_in_the_claimed_pods_daemon_before_the_job_runs_anything() {
    let docker = docker().await;
    let registry = registry(&docker).await;
    let _slots = pod_slots(2).await;
    let (first, second) = (job_id(), job_id());
    let _sweep = Sweep(vec![first, second]);
    let h = harness_with(gocd_dind::clock::Clock::default()).await;
    let mut cluster = cluster();
    cluster["registry_mirror"] = json!(registry.mirror);
    let elastic = json!({"WarmPoolSize": "1", "PrePullImages": HUB_IMAGE});
    let since = now();

    create(&h, &cluster, &elastic, first).await;
    let first_pod = wait_up(&h, &docker, first).await;
    h.service.settle().await;
    create(&h, &cluster, &elastic, second).await;
    let claimed = wait_up(&h, &docker, second).await;
    assert!(h.gocd.console_text().contains(&format!("Claimed warm pod {}", claimed.name)));
    // The image is in the pod's own daemon as the job starts: its first run pulls nothing.
    let images = sh_ok(&docker, &claimed.agent(), "docker image ls --format '{{.Repository}}:{{.Tag}}'").await;
    assert!(images.lines().any(|l| l == HUB_IMAGE), "pre-pulled into the claimed pod's dockerd: {images}");
    let run =
        sh_ok(&docker, &claimed.agent(), &format!("docker run --rm --pull never {HUB_IMAGE} cat /etc/debian_version"))
            .await;
    assert!(run.trim().starts_with("12"), "{run}");
    // It came through the mirror, asked by the warm pod's dockerd.
    let ip = pod_ip(&docker, &claimed).await;
    let log = mirror_log(&docker, since).await;
    assert!(
        log.lines().any(|l| l.contains("/v2/gocd-dind-test/job/manifests/1") && l.contains(&ip)),
        "the mirror served the pre-pull to {ip}:\n{log}"
    );
    assert!(!h.gocd.console_text().contains("could not pre-pull"), "{}", h.gocd.console_text());

    complete(&h, &cluster, &first_pod).await;
    complete(&h, &cluster, &claimed).await;
    assert_nothing_left(&docker, &[first, second], &[&first_pod, &claimed]).await;
    // The replacement warm pod goes with the test's server (by its owner's labels).
    crate::docker_warm::remove_server(&docker, &h.gocd.server_id()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_pods_docker_pull_goes_through_the_mirror() {
    let docker = docker().await;
    let registry = registry(&docker).await;
    let _slots = pod_slots(1).await;
    let job = job_id();
    let _sweep = Sweep(vec![job]);
    let h = harness_with(gocd_dind::clock::Clock::default()).await;
    let mut cluster = cluster();
    cluster["registry_mirror"] = json!(registry.mirror);
    let since = now();

    create(&h, &cluster, &json!({}), job).await;
    let pod = wait_up(&h, &docker, job).await;
    let pulled = sh_ok(
        &docker,
        &pod.agent(),
        &format!("docker pull -q {HUB_IMAGE} && docker info --format '{{{{.RegistryConfig.Mirrors}}}}'"),
    )
    .await;
    assert!(pulled.contains(&registry.mirror), "the pod's dockerd has the mirror: {pulled}");
    let ip = pod_ip(&docker, &pod).await;
    let log = mirror_log(&docker, since).await;
    assert!(
        log.lines().any(|l| l.contains("/v2/gocd-dind-test/job/manifests/1") && l.contains(&ip)),
        "the mirror served {ip}'s pull (Docker Hub is out of reach here):\n{log}"
    );
    complete(&h, &cluster, &pod).await;
    assert_nothing_left(&docker, &[job], &[&pod]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_builds_and_pushes_an_image_and_a_later_job_in_another_pod_pulls_and_runs_it() {
    let docker = docker().await;
    let registry = registry(&docker).await;
    let _slots = pod_slots(1).await;
    let (build, deploy) = (job_id(), job_id());
    let _sweep = Sweep(vec![build, deploy]);
    let h = harness_with(gocd_dind::clock::Clock::default()).await;
    let mut cluster = cluster();
    cluster["registry_mirror"] = json!(registry.mirror);
    cluster["insecure_registries"] = json!(registry.origin);
    let image = format!("{}/team/app:{build}", registry.origin);
    let message = format!("built by job {build}");

    // The build job: a Dockerfile in its workspace, FROM an image the mirror serves.
    create(&h, &cluster, &json!({}), build).await;
    let builder = wait_up(&h, &docker, build).await;
    let script = format!(
        "set -e; mkdir -p /godata/pipelines/app-{build} && cd /godata/pipelines/app-{build}
printf 'FROM {HUB_IMAGE}\\nCOPY message /message\\nCMD [\"cat\", \"/message\"]\\n' > Dockerfile
echo '{message}' > message
docker build -q -t {image} .
docker push {image}"
    );
    let pushed = sh_ok(&docker, &builder.agent(), &script).await;
    assert!(pushed.contains("digest: sha256:"), "{pushed}");
    complete(&h, &cluster, &builder).await;

    // A later job, in a pod of its own, pulls it from the registry and runs it.
    create(&h, &cluster, &json!({}), deploy).await;
    let runner = wait_up(&h, &docker, deploy).await;
    assert_ne!(runner.name, builder.name);
    let output = sh_ok(&docker, &runner.agent(), &format!("docker run --rm {image}")).await;
    assert_eq!(output.trim().lines().last(), Some(message.as_str()), "{output}");
    complete(&h, &cluster, &runner).await;
    assert_nothing_left(&docker, &[build, deploy], &[&builder, &runner]).await;
}
