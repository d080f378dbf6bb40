//! Docker end to end: the service against the local Docker Engine, driven over HTTP the
//! way GoCD (through the shim) drives it, and inspected with bollard. These tests prove
//! the isolation claims of docs/security.md on a real engine; see
//! `docs/testing-docker.md`.
//!
//! They need the engine and the test images (`bash .ci/docker-up.sh && bash
//! .ci/build-test-images.sh`) and FAIL without them: a test that passes by skipping
//! proves nothing.
//!
//! The machines have two cores, so pods are rationed: a test holds one slot of
//! [`POD_SLOTS`] per pod it runs at once. Every test uses job ids of its own and checks,
//! at its end, that nothing labelled with those job ids (or named after its pods) is left
//! on the engine; other tests may be running beside it, so nothing here looks at the
//! engine as a whole. A [`Sweep`] removes what a failed test left behind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{
    ListContainersOptions, ListNetworksOptions, ListVolumesOptions, RemoveContainerOptions, RemoveVolumeOptions,
    UploadToContainerOptions,
};
use bollard::Docker;
use gocd_dind::clock::Clock;
use gocd_dind::demo::{create_agent_body, job_identifier, Harness};
use gocd_dind::fake_gocd::FakeGocd;
use gocd_dind::pod::{label_keys, MANAGED_BY};
use gocd_dind::runtime::Runtimes;
use gocd_dind::service::ServiceOptions;
use serde_json::{json, Value};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::support::{docker, Served, AGENT_IMAGE, DIND_IMAGE, JOB_IMAGE, JOB_IMAGE_TAR};

/// Pods that may run at once across this binary's tests (2 cores).
static POD_SLOTS: Semaphore = Semaphore::const_new(2);

pub(crate) async fn pod_slots(pods: u32) -> SemaphorePermit<'static> {
    POD_SLOTS.acquire_many(pods).await.expect("the pod semaphore is never closed")
}

/// Job ids no other test (and no earlier run) uses: they are the handle on a test's pods.
pub(crate) fn job_id() -> i64 {
    static NEXT: OnceLock<AtomicI64> = OnceLock::new();
    NEXT.get_or_init(|| {
        let micros = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros();
        AtomicI64::new(i64::try_from(micros % 1_000_000_000_000).unwrap() * 100)
    })
    .fetch_add(1, Ordering::Relaxed)
}

pub(crate) fn cluster() -> Value {
    json!({
        "runtime": "docker",
        "go_server_url": "https://127.0.0.1:8154/go",
        "agent_image": AGENT_IMAGE,
        "dind_image": DIND_IMAGE,
        "dind_security": "capabilities",
    })
}

async fn harness() -> Harness {
    harness_with(Clock::default()).await
}

pub(crate) async fn harness_with(clock: Clock) -> Harness {
    let runtimes = Runtimes::new();
    Harness::start(std::sync::Arc::new(runtimes), clock, ServiceOptions::default())
        .await
        .expect("the service starts on loopback")
}

/// One agent pod of a test, found by its job id.
#[derive(Debug, Clone)]
pub(crate) struct Pod {
    pub name: String,
    pub job_id: i64,
}

impl Pod {
    pub fn dind(&self) -> String {
        format!("{}-dind", self.name)
    }

    pub fn agent(&self) -> String {
        format!("{}-agent", self.name)
    }
}

pub(crate) async fn send(h: &Harness, request: &str, body: &Value) -> (u16, String) {
    h.send(request, body).await.unwrap_or_else(|e| panic!("{request}: the service did not answer: {e}"))
}

/// A body exactly as given (malformed JSON cannot go through `Harness::send`).
async fn send_raw(h: &Harness, request: &str, token: &str, body: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}/gocd/elastic-agent/{request}", h.url))
        .bearer_auth(token)
        .body(body.to_owned())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{request}: the service did not answer: {e}"));
    (response.status().as_u16(), response.text().await.unwrap())
}

pub(crate) async fn create(h: &Harness, cluster: &Value, job_id: i64) {
    let (status, body) = send(h, "cd.go.elastic-agent.create-agent", &create_agent_body(cluster, job_id)).await;
    assert_eq!(status, 200, "create-agent for job {job_id} answered {status}: {body}");
}

fn completion(cluster: &Value, pod: &Pod) -> Value {
    json!({"elastic_agent_id": pod.name, "job_identifier": job_identifier(pod.job_id), "cluster_profile_properties": cluster, "elastic_agent_profile_properties": {}})
}

/// GoCD's job-completion; it answers once the pod is gone.
pub(crate) async fn complete(h: &Harness, cluster: &Value, pod: &Pod) {
    h.gocd.set_agent(&pod.name, "Idle", "Enabled");
    let (status, body) = send(h, "cd.go.elastic-agent.job-completion", &completion(cluster, pod)).await;
    assert_eq!(status, 200, "job-completion for {} answered {status}: {body}", pod.name);
}

pub(crate) fn label_filter(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), pairs.iter().map(|(k, v)| format!("{k}={v}")).collect())])
}

pub(crate) async fn job_containers(docker: &Docker, job_id: i64) -> Vec<ContainerSummary> {
    let filters = label_filter(&[(label_keys::MANAGED_BY, MANAGED_BY), (label_keys::JOB_ID, &job_id.to_string())]);
    docker
        .list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() }))
        .await
        .expect("listing containers")
}

pub(crate) fn label<'a>(c: &'a ContainerSummary, key: &str) -> Option<&'a str> {
    c.labels.as_ref().and_then(|l| l.get(key)).map(String::as_str)
}

/// The job's pod once its start has run: its dind and agent containers both run (the
/// agent starts only after dockerd answered over TLS), or the test fails with the job
/// console. The pod is found by its job's label, which a claimed warm pod carries only on
/// its agent container.
pub(crate) async fn pod_up(docker: &Docker, gocd: &FakeGocd, job_id: i64) -> Pod {
    let labelled = job_containers(docker, job_id).await;
    let name = labelled.first().and_then(|c| label(c, label_keys::POD)).unwrap_or_default().to_owned();
    let filters = label_filter(&[(label_keys::MANAGED_BY, MANAGED_BY), (label_keys::POD, &name)]);
    let containers = docker
        .list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() }))
        .await
        .expect("listing containers");
    let running = |which: &str| {
        containers.iter().any(|c| {
            label(c, label_keys::CONTAINER) == Some(which)
                && c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
        })
    };
    assert!(
        !name.is_empty() && running("dind") && running("agent"),
        "no running pod for job {job_id}: containers {:?}; job console:\n{}",
        containers.iter().map(|c| (c.names.clone(), c.state)).collect::<Vec<_>>(),
        gocd.console_text()
    );
    Pod { name, job_id }
}

/// Waits until the service's background work (the pod's start) has run, then
/// [`pod_up`].
pub(crate) async fn wait_up(h: &Harness, docker: &Docker, job_id: i64) -> Pod {
    h.service.settle().await;
    pod_up(docker, &h.gocd, job_id).await
}

/// Everything on the engine that carries one of these job ids or pod names.
pub(crate) async fn objects_of(docker: &Docker, jobs: &[i64], pods: &[&str]) -> Vec<String> {
    let mut selectors: Vec<HashMap<String, Vec<String>>> = Vec::new();
    for job in jobs {
        selectors.push(label_filter(&[(label_keys::JOB_ID, &job.to_string())]));
    }
    for pod in pods {
        selectors.push(label_filter(&[(label_keys::POD, pod)]));
        selectors.push(label_filter(&[(label_keys::AGENT_ID, pod)]));
    }
    let mut found = Vec::new();
    for filters in selectors {
        let containers = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters.clone()),
                ..Default::default()
            }))
            .await
            .expect("listing containers");
        found
            .extend(containers.into_iter().flat_map(|c| c.names.unwrap_or_default()).map(|n| format!("container {n}")));
        let volumes = docker
            .list_volumes(Some(ListVolumesOptions { filters: Some(filters.clone()) }))
            .await
            .expect("listing volumes");
        found.extend(volumes.volumes.unwrap_or_default().into_iter().map(|v| format!("volume {}", v.name)));
        let networks =
            docker.list_networks(Some(ListNetworksOptions { filters: Some(filters) })).await.expect("listing networks");
        found.extend(networks.into_iter().filter_map(|n| n.name).map(|n| format!("network {n}")));
    }
    // By name too: anything called after the pod, labelled or not.
    for pod in pods {
        let filters = HashMap::from([("name".to_owned(), vec![(*pod).to_owned()])]);
        let containers = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters.clone()),
                ..Default::default()
            }))
            .await
            .expect("listing containers");
        found
            .extend(containers.into_iter().flat_map(|c| c.names.unwrap_or_default()).map(|n| format!("container {n}")));
        let volumes =
            docker.list_volumes(Some(ListVolumesOptions { filters: Some(filters) })).await.expect("listing volumes");
        found.extend(volumes.volumes.unwrap_or_default().into_iter().map(|v| format!("volume {}", v.name)));
    }
    found.sort();
    found.dedup();
    found
}

pub(crate) async fn assert_nothing_left(docker: &Docker, jobs: &[i64], pods: &[&Pod]) {
    let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    let left = objects_of(docker, jobs, &names).await;
    assert!(left.is_empty(), "left on the engine for jobs {jobs:?} / pods {names:?}: {left:?}");
}

/// Removes whatever a test leaves under its job ids, also when it panicked.
pub(crate) struct Sweep(pub Vec<i64>);

impl Drop for Sweep {
    fn drop(&mut self) {
        let jobs = std::mem::take(&mut self.0);
        let swept = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let docker = Docker::connect_with_defaults().ok()?.negotiate_version().await.ok()?;
                let mut removed = Vec::new();
                for job in jobs {
                    let filters = label_filter(&[(label_keys::JOB_ID, &job.to_string())]);
                    let containers = docker
                        .list_containers(Some(ListContainersOptions {
                            all: true,
                            filters: Some(filters.clone()),
                            ..Default::default()
                        }))
                        .await
                        .ok()?;
                    for c in containers {
                        let id = c.id.unwrap_or_default();
                        let _ = docker
                            .remove_container(
                                &id,
                                Some(RemoveContainerOptions { force: true, v: true, ..Default::default() }),
                            )
                            .await;
                        removed.push(id);
                    }
                    let volumes =
                        docker.list_volumes(Some(ListVolumesOptions { filters: Some(filters) })).await.ok()?;
                    for v in volumes.volumes.unwrap_or_default() {
                        let _ = docker.remove_volume(&v.name, Some(RemoveVolumeOptions { force: true })).await;
                        removed.push(v.name);
                    }
                }
                Some(removed)
            })
        })
        .join();
        if let Ok(Some(removed)) = swept {
            if !removed.is_empty() {
                eprintln!("sweep removed what a test left behind: {removed:?}");
            }
        }
    }
}

/// `sh -c script` in a container, as `user` (its default user when `None`).
pub(crate) async fn sh_as(docker: &Docker, container: &str, user: Option<&str>, script: &str) -> (i64, String) {
    gocd_dind::runtime::docker::exec(docker, container, user, &["sh", "-c", script])
        .await
        .unwrap_or_else(|e| panic!("exec in {container}: {e}"))
}

pub(crate) async fn sh(docker: &Docker, container: &str, script: &str) -> (i64, String) {
    sh_as(docker, container, None, script).await
}

/// Like [`sh`], and the script must succeed.
pub(crate) async fn sh_ok(docker: &Docker, container: &str, script: &str) -> String {
    let (code, output) = sh(docker, container, script).await;
    assert_eq!(code, 0, "in {container}: `{script}` exited {code}:\n{output}");
    output
}

/// Loads the job image into the pod's own daemon, from the agent, as a job would.
pub(crate) async fn load_job_image(docker: &Docker, pod: &Pod) {
    let tar = tokio::fs::read(JOB_IMAGE_TAR)
        .await
        .unwrap_or_else(|e| panic!("reading {JOB_IMAGE_TAR}: {e} (run .ci/build-test-images.sh)"));
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(tar.len() as u64);
    header.set_mode(0o644);
    header.set_uid(1000);
    header.set_gid(0);
    archive.append_data(&mut header, "godata/job-image.tar", tar.as_slice()).unwrap();
    let options = UploadToContainerOptions { path: "/".into(), ..Default::default() };
    docker
        .upload_to_container(&pod.agent(), Some(options), bollard::body_full(archive.into_inner().unwrap().into()))
        .await
        .expect("uploading the job image into /godata");
    sh_ok(docker, &pod.agent(), "docker load -q -i /godata/job-image.tar && rm -f /godata/job-image.tar").await;
}

/// DER of the first PEM block.
fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body.trim()).unwrap_or_else(|e| panic!("not PEM ({e}):\n{pem}"))
}

/// The raw public key of a PEM private key.
fn public_key(key_pem: &str) -> Vec<u8> {
    rcgen::KeyPair::from_pem(key_pem)
        .unwrap_or_else(|e| panic!("not a PEM private key ({e})"))
        .public_key_raw()
        .to_vec()
}

/// Whether a certificate is for this public key (it is in its SubjectPublicKeyInfo; a
/// certificate never carries its issuer's key, only a hash of it).
fn certifies(cert_pem: &str, public: &[u8]) -> bool {
    pem_der(cert_pem).windows(public.len()).any(|w| w == public)
}

/// One container's /gocd-dind/tls.
#[derive(Debug)]
struct Tls {
    ca: String,
    cert: String,
    key: String,
}

async fn tls_of(docker: &Docker, container: &str) -> Tls {
    let read =
        |file: &'static str| async move { sh_ok(docker, container, &format!("cat /gocd-dind/tls/{file}")).await };
    Tls { ca: read("ca.pem").await, cert: read("cert.pem").await, key: read("key.pem").await }
}

/// Files holding a PEM private key under the usual places, searched as root.
async fn private_key_files(docker: &Docker, container: &str) -> Vec<String> {
    let script = "grep -rlIsE -e '^-----BEGIN ([A-Z]+ )?PRIVATE KEY-----' /gocd-dind /godata /go-working-dir /home /root /tmp /etc /run /var/run /var/lib/docker 2>/dev/null | sort -u; true";
    let (_, output) = sh_as(docker, container, Some("0"), script).await;
    output.lines().map(str::to_owned).collect()
}

pub(crate) async fn bridge_ip(docker: &Docker, container: &str) -> String {
    let inspected =
        docker.inspect_container(container, None).await.unwrap_or_else(|e| panic!("inspecting {container}: {e}"));
    inspected
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.values().find_map(|e| e.ip_address.clone().filter(|ip| !ip.is_empty())))
        .unwrap_or_else(|| panic!("{container} has no IP address"))
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_reaches_its_own_dockerd_over_tls_and_docker_run_sees_godata() {
    let docker = docker().await;
    let _slots = pod_slots(1).await;
    let job = job_id();
    let _sweep = Sweep(vec![job]);
    let h = harness().await;
    let cluster = cluster();

    create(&h, &cluster, job).await;
    let pod = wait_up(&h, &docker, job).await;
    let agent = pod.agent();

    let path = sh_ok(&docker, &agent, "echo \"$PATH\"; command -v docker").await;
    assert!(path.contains("/opt/agent-tools/bin"), "the image's own PATH is kept: {path}");
    assert!(path.trim_end().ends_with("/docker"), "docker is on the PATH: {path}");
    let ids = sh_ok(&docker, &agent, "id -u; id -g").await;
    assert_eq!(ids.split_whitespace().collect::<Vec<_>>(), ["1000", "0"], "the agent runs as GoCD's user go (1000:0)");
    let info =
        sh_ok(&docker, &agent, "echo \"$DOCKER_HOST\"; docker info --format '{{.ServerVersion}} {{.Driver}}'").await;
    assert!(info.starts_with("tcp://127.0.0.1:2376\n"), "DOCKER_HOST is the pod's loopback: {info}");
    assert!(info.contains("overlay2"), "the inner daemon stores images on overlay2, not vfs: {info}");
    // Without the client certificate the daemon does not talk: TLS is not optional.
    let (code, plain) = sh(&docker, &agent, "env -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH docker version").await;
    assert_ne!(code, 0, "plain HTTP to the pod's daemon must fail:\n{plain}");

    load_job_image(&docker, &pod).await;
    let marker = format!("written by job {job} as $(id -u):$(id -g)");
    let output = sh_ok(
        &docker,
        &agent,
        &format!("set -e; mkdir -p /godata/pipelines/e2e-{job} && cd /godata/pipelines/e2e-{job}; echo \"{marker}\" > job-file.txt; docker run --rm -v \"$PWD\":/src {JOB_IMAGE} cat /src/job-file.txt"),
    )
    .await;
    assert!(
        output.contains(&format!("written by job {job} as 1000:0")),
        "docker run -v $PWD:/src from /godata did not see the agent's file:\n{output}"
    );

    complete(&h, &cluster, &pod).await;
    assert_nothing_left(&docker, &[job], &[&pod]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_has_no_docker_socket_no_privilege_and_only_the_client_key() {
    let docker = docker().await;
    let _slots = pod_slots(1).await;
    let job = job_id();
    let _sweep = Sweep(vec![job]);
    let h = harness().await;
    let cluster = cluster();

    create(&h, &cluster, job).await;
    let pod = wait_up(&h, &docker, job).await;
    let agent = pod.agent();

    let inspected = docker.inspect_container(&agent, None).await.expect("inspecting the agent");
    let host = inspected.host_config.clone().expect("HostConfig");
    assert_eq!(host.privileged, Some(false), "the agent container is not privileged");
    assert!(
        host.cap_add.clone().unwrap_or_default().is_empty(),
        "the agent gets no extra capabilities: {:?}",
        host.cap_add
    );
    assert!(host.binds.clone().unwrap_or_default().is_empty(), "the agent has no bind mounts: {:?}", host.binds);
    assert!(
        host.security_opt.clone().unwrap_or_default().iter().any(|o| o.starts_with("no-new-privileges")),
        "no-new-privileges: {:?}",
        host.security_opt
    );
    for mount in inspected.mounts.clone().unwrap_or_default() {
        let source = mount.source.clone().unwrap_or_default();
        assert!(
            !source.contains("docker.sock") && !source.starts_with("/var/run") && !source.starts_with("/run"),
            "the agent mounts {mount:?}"
        );
        assert_eq!(mount.typ, Some("volume".to_owned()), "only the pod's own volumes: {mount:?}");
    }
    let env = inspected.config.and_then(|c| c.env).unwrap_or_default();
    assert!(
        env.contains(&"DOCKER_HOST=tcp://127.0.0.1:2376".to_owned()),
        "DOCKER_HOST points at the pod's daemon: {env:?}"
    );
    // A socket bind-mounted over a file shows as a regular file to `find -type s` (readdir
    // reports the type underneath the mount), so mount points are tested one by one.
    let sockets = sh_ok(
        &docker,
        &agent,
        "for p in /var/run/docker.sock /run/docker.sock /var/run/docker /run/containerd /var/run/containerd; do \
           [ ! -e $p ] || echo \"present: $p\"; done; \
         for m in $(awk '{print $5}' /proc/self/mountinfo); do [ ! -S \"$m\" ] || echo \"socket mounted at $m\"; done; \
         find / \\( -path /proc -o -path /sys \\) -prune -o -type s -print 2>/dev/null; true",
    )
    .await;
    assert!(sockets.trim().is_empty(), "the agent sees a socket:\n{sockets}");

    // TLS material: dind holds the server pair, the agent the client pair; no CA key anywhere.
    for container in [&agent, &pod.dind()] {
        let files = sh_ok(&docker, container, "ls -A /gocd-dind/tls").await;
        assert_eq!(
            files.split_whitespace().collect::<Vec<_>>(),
            ["ca.pem", "cert.pem", "key.pem"],
            "{container}:/gocd-dind/tls"
        );
    }
    let agent_tls = tls_of(&docker, &agent).await;
    let dind_tls = tls_of(&docker, &pod.dind()).await;
    assert_eq!(agent_tls.ca, dind_tls.ca, "both containers trust the pod's one CA");
    assert_ne!(agent_tls.key, dind_tls.key, "the agent's key.pem must not be dind's");
    assert_ne!(agent_tls.cert, dind_tls.cert);
    let client = public_key(&agent_tls.key);
    let server = public_key(&dind_tls.key);
    assert!(certifies(&agent_tls.cert, &client), "the agent's key.pem is the key of its (client) cert.pem");
    assert!(certifies(&dind_tls.cert, &server), "dind's key.pem is the key of its (server) cert.pem");
    assert!(!certifies(&dind_tls.cert, &client), "the agent holds the server key");
    assert!(!certifies(&agent_tls.cert, &server), "dind holds the client key");
    assert!(!certifies(&agent_tls.ca, &client) && !certifies(&agent_tls.ca, &server), "a key in the pod is the CA key");
    assert_eq!(private_key_files(&docker, &agent).await, ["/gocd-dind/tls/key.pem"], "private keys in the agent");
    assert_eq!(private_key_files(&docker, &pod.dind()).await, ["/gocd-dind/tls/key.pem"], "private keys in dind");
    let dind_env =
        docker.inspect_container(&pod.dind(), None).await.unwrap().config.and_then(|c| c.env).unwrap_or_default();
    assert!(!env.iter().chain(&dind_env).any(|v| v.contains("PRIVATE KEY")), "no key travels in the environment");

    complete(&h, &cluster, &pod).await;
    assert_nothing_left(&docker, &[job], &[&pod]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_pods_have_their_own_certificates_and_cannot_reach_each_other() {
    let docker = docker().await;
    let _slots = pod_slots(2).await;
    let (job_a, job_b) = (job_id(), job_id());
    let _sweep = Sweep(vec![job_a, job_b]);
    let h = harness().await;
    let cluster = cluster();

    tokio::join!(create(&h, &cluster, job_a), create(&h, &cluster, job_b));
    let (a, b) = tokio::join!(wait_up(&h, &docker, job_a), wait_up(&h, &docker, job_b));
    assert_ne!(a.name, b.name);

    let (a_agent, b_agent) = (tls_of(&docker, &a.agent()).await, tls_of(&docker, &b.agent()).await);
    let (a_dind, b_dind) = (tls_of(&docker, &a.dind()).await, tls_of(&docker, &b.dind()).await);
    assert_ne!(a_agent.ca, b_agent.ca, "each pod has its own CA");
    assert_ne!(a_agent.cert, b_agent.cert);
    assert_ne!(a_agent.key, b_agent.key);
    assert_ne!(a_dind.cert, b_dind.cert);
    assert_ne!(a_dind.key, b_dind.key);

    let (a_ip, b_ip) = (bridge_ip(&docker, &a.dind()).await, bridge_ip(&docker, &b.dind()).await);
    sh_ok(&docker, &a.agent(), "docker version --format '{{.Server.Version}}'").await;
    // From pod A, pod B's address answers but no daemon listens there: B's dockerd
    // listens on B's loopback only. A refused connection shows both at once.
    for port in [2375, 2376] {
        let (code, output) = sh(&docker, &a.agent(), &format!("bash -c 'echo > /dev/tcp/{b_ip}/{port}' 2>&1")).await;
        assert!(
            code != 0 && output.to_lowercase().contains("connection refused"),
            "pod A -> {b_ip}:{port} was not refused (exit {code}):\n{output}"
        );
    }
    for script in [
        format!("docker -H tcp://{b_ip}:2376 version"),
        format!("env -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH docker -H tcp://{b_ip}:2375 version"),
    ] {
        let (code, output) = sh(&docker, &a.agent(), &script).await;
        assert_ne!(code, 0, "pod A's agent reached pod B's daemon with `{script}`:\n{output}");
    }
    // From the host, no daemon port answers on any pod's address.
    for ip in [&a_ip, &b_ip] {
        for port in [2375, 2376] {
            let connect = tokio::net::TcpStream::connect((ip.as_str(), port)).await;
            assert!(
                matches!(&connect, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
                "the host's connection to {ip}:{port} was not refused: {connect:?}"
            );
        }
    }
    for pod in [&a, &b] {
        let inspected = docker.inspect_container(&pod.dind(), None).await.unwrap();
        let bindings = inspected.host_config.and_then(|h| h.port_bindings).unwrap_or_default();
        assert!(bindings.is_empty(), "{} publishes ports: {bindings:?}", pod.dind());
    }

    tokio::join!(complete(&h, &cluster, &a), complete(&h, &cluster, &b));
    assert_nothing_left(&docker, &[job_a, job_b], &[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_of_one_pod_is_invisible_to_the_host_and_to_the_other_pod() {
    let docker = docker().await;
    let _slots = pod_slots(2).await;
    let (job_a, job_b) = (job_id(), job_id());
    let _sweep = Sweep(vec![job_a, job_b]);
    let h = harness().await;
    let cluster = cluster();

    tokio::join!(create(&h, &cluster, job_a), create(&h, &cluster, job_b));
    let (a, b) = tokio::join!(wait_up(&h, &docker, job_a), wait_up(&h, &docker, job_b));
    load_job_image(&docker, &a).await;
    let marker = format!("marker-{job_a}");
    sh_ok(&docker, &a.agent(), &format!("docker run -d --name {marker} {JOB_IMAGE} sleep 300")).await;
    let inside_a = sh_ok(&docker, &a.agent(), "docker ps --format '{{.Names}}'").await;
    assert!(inside_a.lines().any(|l| l == marker), "pod A's daemon runs {marker}: {inside_a}");

    let host = docker.list_containers(Some(ListContainersOptions { all: true, ..Default::default() })).await.unwrap();
    let host_names: Vec<String> = host.into_iter().flat_map(|c| c.names.unwrap_or_default()).collect();
    assert!(!host_names.iter().any(|n| n.contains(&marker)), "the host engine sees {marker}: {host_names:?}");
    let inside_b = sh_ok(
        &docker,
        &b.agent(),
        "docker ps -a --format '{{.Names}}'; echo images:; docker images --format '{{.Repository}}:{{.Tag}}'",
    )
    .await;
    assert!(!inside_b.contains(&marker), "pod B's daemon sees {marker}:\n{inside_b}");
    assert!(!inside_b.contains(JOB_IMAGE), "pod B's daemon has pod A's image:\n{inside_b}");

    tokio::join!(complete(&h, &cluster, &a), complete(&h, &cluster, &b));
    assert_nothing_left(&docker, &[job_a, job_b], &[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_agent_sent_five_times_at_once_makes_one_pod() {
    let docker = docker().await;
    let _slots = pod_slots(1).await;
    let job = job_id();
    let _sweep = Sweep(vec![job]);
    let h = harness().await;
    let cluster = cluster();

    let body = create_agent_body(&cluster, job);
    let answers =
        futures_util::future::join_all((0..5).map(|_| send(&h, "cd.go.elastic-agent.create-agent", &body))).await;
    for (status, text) in &answers {
        assert_eq!(*status, 200, "create-agent answered {status}: {text}");
    }
    let pod = wait_up(&h, &docker, job).await;
    // GoCD keeps asking while the job waits: once more after the pod is up.
    create(&h, &cluster, job).await;
    h.service.settle().await;
    let containers = job_containers(&docker, job).await;
    let mut pods: Vec<&str> = containers.iter().filter_map(|c| label(c, label_keys::POD)).collect();
    pods.sort_unstable();
    pods.dedup();
    assert_eq!(pods, [pod.name.as_str()], "pods for job {job}");
    assert_eq!(
        containers.len(),
        2,
        "one dind and one agent container: {:?}",
        containers.iter().map(|c| c.names.clone()).collect::<Vec<_>>()
    );
    let created = h.gocd.console_text().matches("Creating agent pod").count();
    assert_eq!(created, 1, "console:\n{}", h.gocd.console_text());

    complete(&h, &cluster, &pod).await;
    assert_nothing_left(&docker, &[job], &[&pod]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn job_completion_after_the_service_was_killed_and_restarted_removes_the_pod() {
    let docker = docker().await;
    let _slots = pod_slots(1).await;
    let job = job_id();
    let _sweep = Sweep(vec![job]);
    let token = uuid::Uuid::new_v4().simple().to_string();
    let gocd = FakeGocd::start(&token).await.unwrap();
    let cluster = cluster();

    let mut first = Served::start(&gocd.url, &token, &[], &[]).await;
    let (status, body) = first.send("cd.go.elastic-agent.create-agent", &create_agent_body(&cluster, job)).await;
    assert_eq!(status, 200, "create-agent answered {status}: {body}");
    // The service says in the job console when the pod is up (or why not).
    gocd.wait_until(|gocd| {
        let console = gocd.console_text();
        console.contains(" is up after ") || console.contains("failed to start")
    })
    .await;
    let pod = pod_up(&docker, &gocd, job).await;
    gocd.set_agent(&pod.name, "Building", "Enabled");
    first.child.kill().await.expect("SIGKILL to the first service");
    drop(first);
    assert_eq!(job_containers(&docker, job).await.len(), 2, "killing the service leaves the job's pod running");

    let second = Served::start(&gocd.url, &token, &[], &[]).await;
    gocd.set_agent(&pod.name, "Idle", "Enabled");
    let (status, body) = second.send("cd.go.elastic-agent.job-completion", &completion(&cluster, &pod)).await;
    assert_eq!(status, 200, "job-completion answered {status}: {body}; log:\n{}", second.log_text());
    let left = objects_of(&docker, &[job], &[&pod.name]).await;
    assert!(left.is_empty(), "the restarted service left {left:?}; log:\n{}", second.log_text());
    let disabled = gocd.calls_to("go.processor.elastic-agents.disable-agents");
    let deleted = gocd.calls_to("go.processor.elastic-agents.delete-agents");
    assert!(disabled.iter().any(|c| c.body.contains(&pod.name)), "the agent was disabled: {disabled:?}");
    assert!(deleted.iter().any(|c| c.body.contains(&pod.name)), "the agent was deleted: {deleted:?}");
    assert!(gocd.agents().is_empty(), "GoCD still lists {:?}", gocd.agents());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_whose_agent_never_registers_is_removed_by_server_ping() {
    let docker = docker().await;
    let _slots = pod_slots(1).await;
    let job = job_id();
    let _sweep = Sweep(vec![job]);
    let clock = Clock::default();
    let h = harness_with(clock.clone()).await;
    // The moved clock makes every pod of the cluster look stale; other tests' pods on this
    // engine are not in it because each test's fake GoCD is a server of its own (the
    // server-id label), whatever the profile. Spelled out, the same engine is the same
    // cluster.
    let mut cluster = cluster();
    cluster["docker_host"] = json!("unix:///var/run/docker.sock");
    let ping = json!({"all_cluster_profile_properties": [cluster]});

    create(&h, &cluster, job).await;
    let pod = wait_up(&h, &docker, job).await;
    let (status, body) = send(&h, "cd.go.elastic-agent.server-ping", &ping).await;
    assert_eq!(status, 200, "server-ping answered {status}: {body}");
    assert_eq!(job_containers(&docker, job).await.len(), 2, "a pod within its auto-register timeout stays");

    clock.advance(Duration::from_secs(11 * 60));
    let (status, body) = send(&h, "cd.go.elastic-agent.server-ping", &ping).await;
    assert_eq!(status, 200, "server-ping answered {status}: {body}");
    assert_nothing_left(&docker, &[job], &[&pod]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_create_agent_requests_create_nothing() {
    let docker = docker().await;
    let jobs: Vec<i64> = (0..5).map(|_| job_id()).collect();
    let _sweep = Sweep(jobs.clone());
    let h = harness().await;
    let cluster = cluster();
    let request = "cd.go.elastic-agent.create-agent";

    let body = create_agent_body(&cluster, jobs[0]).to_string();
    let (status, text) = send_raw(&h, request, &h.token, &body[..body.len() - 7]).await;
    assert!((400..500).contains(&status), "malformed JSON answered {status}: {text}");

    let mut missing = create_agent_body(&cluster, jobs[1]);
    missing.as_object_mut().unwrap().remove("job_identifier");
    let (status, text) = send(&h, request, &missing).await;
    assert!((400..500).contains(&status), "no job_identifier answered {status}: {text}");
    assert!(text.contains("job_identifier"), "the error names the missing field: {text}");

    let mut invalid = create_agent_body(&cluster, jobs[2]);
    invalid["elastic_agent_profile_properties"] = json!({"AgentMemory": "2X"});
    let (status, text) = send(&h, request, &invalid).await;
    assert!((400..500).contains(&status), "AgentMemory 2X answered {status}: {text}");
    assert!(text.contains("AgentMemory"), "the error names the field: {text}");

    let mut bad_cluster = create_agent_body(&cluster, jobs[3]);
    bad_cluster["cluster_profile_properties"]["dind_security"] = json!("sometimes");
    let (status, text) = send(&h, request, &bad_cluster).await;
    assert!((400..500).contains(&status), "dind_security sometimes answered {status}: {text}");

    let (status, text) =
        send_raw(&h, request, "not-the-token", &create_agent_body(&cluster, jobs[4]).to_string()).await;
    assert_eq!(status, 401, "a wrong token answered {status}: {text}");

    // Whatever these requests started in the background has run.
    h.service.settle().await;
    assert_nothing_left(&docker, &jobs, &[]).await;
    let console = h.gocd.console_text();
    assert!(console.contains("AgentMemory"), "the job console says why no pod was created:\n{console}");
    assert!(!console.contains("Creating agent pod"), "console:\n{console}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dockerd_that_never_comes_up_is_explained_and_removed() {
    let docker = docker().await;
    let _slots = pod_slots(1).await;
    let job = job_id();
    let _sweep = Sweep(vec![job]);
    let h = harness().await;
    // Debian without docker.io: the dind script fails at once (no docker CLI to lend, no dockerd).
    let mut cluster = cluster();
    cluster["dind_image"] = json!(JOB_IMAGE);

    create(&h, &cluster, job).await;
    h.service.settle().await;
    let console = h.gocd.console_text();
    println!("dind that cannot start; job console:\n{console}");
    assert!(console.contains("failed to start"), "the failure is in the console:\n{console}");
    assert!(console.contains("did not answer over TLS"), "the console says dockerd did not come up:\n{console}");
    // dind exited at once: the probe stopped there instead of spending its budget.
    assert!(console.contains("the dind container exited"), "the probe waited out its budget:\n{console}");
    assert!(
        console.contains("cannot stat"),
        "the console carries dind's log (cp of the missing docker CLI):\n{console}"
    );
    let name = crate::support::pod_in_console(&console);
    let pod = Pod { name, job_id: job };

    let report_request = json!({"job_identifier": job_identifier(job), "cluster_profile_properties": cluster});
    let (status, report) = send(&h, "cd.go.elastic-agent.agent-status-report", &report_request).await;
    assert_eq!(status, 200, "agent-status-report answered {status}: {report}");
    assert!(
        report.contains("could not start") && report.contains("did not answer over TLS"),
        "the status report says why:\n{report}"
    );
    assert!(report.contains("cannot stat"), "the status report carries dind's log:\n{report}");
    assert_nothing_left(&docker, &[job], &[&pod]).await;
}

/// What a `PodSpecPatch` may set and the Docker runtime honours, on a real engine: a host
/// alias and a DNS search domain (the agent shares dind's `/etc/hosts` and
/// `/etc/resolv.conf`), an extra volume the agent can write, a label.
#[tokio::test(flavor = "multi_thread")]
async fn the_allowed_patch_fields_reach_the_running_pod() {
    let docker = docker().await;
    let _slots = pod_slots(1).await;
    let job = job_id();
    let _sweep = Sweep(vec![job]);
    let h = harness().await;
    let cluster = cluster();
    let patch = r#"{"metadata": {"labels": {"team": "payments"}},
        "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["nexus.ci"]}],
        "dnsConfig": {"searches": ["ci.example.com"]},
        "volumes": [{"name": "cache", "emptyDir": {}}],
        "containers": [{"name": "agent", "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}]}"#;
    let mut body = create_agent_body(&cluster, job);
    body["elastic_agent_profile_properties"] = json!({"PodSpecPatch": patch});
    let (status, answer) = send(&h, "cd.go.elastic-agent.create-agent", &body).await;
    assert_eq!(status, 200, "{answer}");
    let pod = wait_up(&h, &docker, job).await;

    let hosts = sh_ok(&docker, &pod.agent(), "cat /etc/hosts; cat /etc/resolv.conf; touch /cache/written").await;
    assert!(hosts.contains("10.1.2.3") && hosts.contains("nexus.ci"), "the agent's /etc/hosts:\n{hosts}");
    assert!(hosts.contains("ci.example.com"), "the agent's resolv.conf:\n{hosts}");
    let containers = job_containers(&docker, job).await;
    assert!(containers.iter().all(|c| label(c, "team") == Some("payments")), "the label on every container");

    complete(&h, &cluster, &pod).await;
    assert_nothing_left(&docker, &[job], &[&pod]).await;
}
