//! `gocd-dind demo`: one GoCD job end to end on the local Docker Engine, with GoCD
//! played by [`FakeGocd`]. It drives the service over HTTP exactly as the shim would,
//! and prints how long each phase took.
//!
//! [`Harness`] is the same setup for tests and benchmarks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bollard::query_parameters::{ListContainersOptions, ListVolumesOptions, UploadToContainerOptions};
use bollard::Docker;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::DemoArgs;
use crate::fake_gocd::FakeGocd;
use crate::pod::{label_keys, AGENT_CONTAINER, MANAGED_BY};
use crate::processor::ProcessorClient;
use crate::runtime::docker::translate::container_name;
use crate::runtime::RuntimeProvider;
use crate::service::{Service, ServiceOptions};
use crate::settings::{cluster, Choice, RuntimeKind};

/// The service on a loopback port, GoCD faked behind its processor bridge.
pub struct Harness {
    pub gocd: FakeGocd,
    pub service: Arc<Service>,
    pub url: String,
    pub token: String,
    http: reqwest::Client,
    stop: CancellationToken,
}

impl Harness {
    pub async fn start(
        runtimes: Arc<dyn RuntimeProvider>,
        clock: Clock,
        options: ServiceOptions,
    ) -> anyhow::Result<Self> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let gocd = FakeGocd::start(&token).await?;
        let service = Service::new(runtimes, ProcessorClient::new(&gocd.url, &token), clock, options);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let stop = CancellationToken::new();
        let router = crate::http::router(service.clone(), &token);
        let until = stop.clone().cancelled_owned();
        tokio::spawn(crate::serve(listener, router, until));
        Ok(Self { gocd, service, url, token, http: reqwest::Client::new(), stop })
    }

    /// Sends one GoCD request as the shim forwards it; returns status and body.
    pub async fn send(&self, request: &str, body: &Value) -> anyhow::Result<(u16, String)> {
        let response = self
            .http
            .post(format!("{}/gocd/elastic-agent/{request}", self.url))
            .bearer_auth(&self.token)
            .body(if body.is_null() { String::new() } else { body.to_string() })
            .send()
            .await?;
        Ok((response.status().as_u16(), response.text().await?))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub fn job_identifier(job_id: i64) -> Value {
    json!({"pipeline_name": "demo", "pipeline_label": "1", "pipeline_counter": 1, "stage_name": "build", "stage_counter": "1", "job_name": "docker-build", "job_id": job_id})
}

/// A create-agent body for the local engine.
pub fn create_agent_body(cluster: &Value, job_id: i64) -> Value {
    json!({
        "auto_register_key": uuid::Uuid::new_v4().to_string(),
        "elastic_agent_profile_properties": {},
        "cluster_profile_properties": cluster,
        "job_identifier": job_identifier(job_id),
    })
}

/// Containers and volumes of one pod (every object carries the ownership labels and its
/// pod's name) left on the engine.
pub async fn leftovers(docker: &Docker, pod: &str) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let labels = vec![format!("{}={MANAGED_BY}", label_keys::MANAGED_BY), format!("{}={pod}", label_keys::POD)];
    let filters = std::collections::HashMap::from([("label".to_owned(), labels)]);
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters.clone()),
            ..Default::default()
        }))
        .await?;
    let volumes = docker.list_volumes(Some(ListVolumesOptions { filters: Some(filters) })).await?;
    Ok((
        containers.into_iter().flat_map(|c| c.names.unwrap_or_default()).collect(),
        volumes.volumes.unwrap_or_default().into_iter().map(|v| v.name).collect(),
    ))
}

/// Runs `sh -c script` in a container as its default user; returns exit code and output.
pub async fn exec(docker: &Docker, container: &str, script: &str) -> anyhow::Result<(i64, String)> {
    Ok(crate::runtime::docker::exec(docker, container, None, &["sh", "-c", script]).await?)
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let docker = Docker::connect_with_defaults()?
        .negotiate_version()
        .await
        .context("no Docker Engine: start dockerd (see README)")?;
    let runtimes = crate::runtime::Runtimes::new();
    let harness = Harness::start(Arc::new(runtimes), Clock::default(), ServiceOptions::default()).await?;
    let cluster = json!({
        (cluster::RUNTIME.key): RuntimeKind::Docker.name(),
        (cluster::GO_SERVER_URL.key): "https://127.0.0.1:8154/go",
        (cluster::AGENT_IMAGE.key): args.agent_image,
        (cluster::DIND_IMAGE.key): args.dind_image,
        (cluster::DIND_SECURITY.key): args.dind_security.name(),
    });
    let job_id = i64::from(std::process::id());
    let mut phases: Vec<(&str, Duration)> = Vec::new();
    println!("gocd-dind demo: one GoCD job on the local Docker Engine");

    let started = Instant::now();
    let (status, body) = harness.send("cd.go.elastic-agent.create-agent", &create_agent_body(&cluster, job_id)).await?;
    if status != 200 {
        bail!("create-agent answered {status}: {body}");
    }
    // The pod is up (or its creation failed) once the service's background work has run.
    harness.service.settle().await;
    let pod = started.elapsed();
    if let Some(failure) = harness.service.last_failure(job_id) {
        bail!("the pod failed to start: {}\njob console:\n{}", failure.reason, harness.gocd.console_text());
    }
    phases.push(("create-agent -> dockerd answers over TLS, agent started", pod));
    let name = harness.service.pod_of_job(job_id).map(|r| r.info.name).context("pod vanished")?;
    println!("  pod {name} is up after {:.2} s", pod.as_secs_f64());

    // GoCD: the agent registers and asks for work.
    harness.gocd.set_agent(&name, "Idle", "Enabled");
    let assign = json!({"agent": {"agent_id": name, "agent_state": "Idle", "build_state": "Idle", "config_state": "Enabled"}, "job_identifier": job_identifier(job_id), "cluster_profile_properties": cluster, "elastic_agent_profile_properties": {}});
    let (_, answer) = harness.send("cd.go.elastic-agent.should-assign-work", &assign).await?;
    println!("  should-assign-work for this job: {answer}");
    harness.gocd.set_agent(&name, "Building", "Enabled");

    let agent = container_name(&name, AGENT_CONTAINER);
    let job_started = Instant::now();
    play_job(&docker, &agent, &args, job_id).await?;
    phases.push(("job: docker load + docker run -v $PWD from /godata", job_started.elapsed()));

    let completed = Instant::now();
    let completion = json!({"elastic_agent_id": name, "job_identifier": job_identifier(job_id), "cluster_profile_properties": cluster, "elastic_agent_profile_properties": {}});
    harness.gocd.set_agent(&name, "Idle", "Enabled");
    let (status, _) = harness.send("cd.go.elastic-agent.job-completion", &completion).await?;
    let (containers, volumes) = leftovers(&docker, &name).await?;
    if status != 200 || !containers.is_empty() || !volumes.is_empty() {
        bail!("teardown left containers {containers:?} and volumes {volumes:?}");
    }
    phases.push(("job-completion -> containers, volumes, certificates gone", completed.elapsed()));
    phases.push(("total", started.elapsed()));
    println!("\n  {:<60} {:>9}", "phase", "seconds");
    for (phase, took) in phases {
        println!("  {phase:<60} {:>9.2}", took.as_secs_f64());
    }
    println!("\ndemo passed: no container or volume of pod {name} is left on the engine");
    Ok(())
}

/// The job: what a GoCD task would do with Docker, run in the agent container.
async fn play_job(docker: &Docker, agent: &str, args: &DemoArgs, job_id: i64) -> anyhow::Result<()> {
    let tar = tokio::fs::read(&args.job_image_tar)
        .await
        .with_context(|| format!("reading {} (run .ci/build-test-images.sh)", args.job_image_tar.display()))?;
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(tar.len() as u64);
    header.set_mode(0o644);
    header.set_uid(1000);
    archive.append_data(&mut header, "godata/job-image.tar", tar.as_slice())?;
    docker
        .upload_to_container(
            agent,
            Some(UploadToContainerOptions { path: "/".into(), ..Default::default() }),
            bollard::body_full(archive.into_inner()?.into()),
        )
        .await?;
    let script = format!(
        "set -e; docker version --format 'inner daemon {{{{.Server.Version}}}} over TLS'; docker load -q -i /godata/job-image.tar; rm /godata/job-image.tar; \
         mkdir -p /godata/pipelines/demo && cd /godata/pipelines/demo && echo 'built by job {job_id}' > artifact.txt; \
         docker run --rm -v \"$PWD\":/src {} cat /src/artifact.txt",
        args.job_image
    );
    let (code, output) = exec(docker, agent, &script).await?;
    for line in output.lines() {
        println!("  | {line}");
    }
    if code != 0 || !output.contains(&format!("built by job {job_id}")) {
        bail!("the job failed (exit {code})");
    }
    Ok(())
}
