//! The Docker Engine runtime (bollard): one machine with Docker is a complete
//! installation. See `docker/translate.rs` for how the pod maps onto the engine.

mod archive;
mod listing;
pub mod translate;
mod warm;

use std::collections::HashMap;
use std::time::{Duration, Instant, UNIX_EPOCH};

use async_trait::async_trait;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, ListVolumesOptions, LogsOptions,
    RemoveContainerOptions, RemoveVolumeOptions, StartContainerOptions, UploadToContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::OnceCell;

use self::translate::{ContainerPlan, DockerPod};
use super::{ContainerDetails, PodDetails, PodInfo, PodPhase, Runtime, RuntimeError};
use crate::pod::{label_keys, AgentPod, Ownership, DIND_CONTAINER};
use crate::settings::{ClusterId, DockerConnection};

/// Engine calls that are not long-running (creating, listing, removing).
const CALL_TIMEOUT: u64 = 120;
/// An image pull is bounded too: a registry that hangs must not hang the job forever.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
/// How the errors of a failed pull begin ([`is_pull_failure`] reads them back).
const CANNOT_PULL: &str = "cannot pull image";
const PULL_TOOK_TOO_LONG: &str = "pulling image";
/// dockerd's lines the agent status report reads (its problems first, the rest folded).
const REPORT_LOG_LINES: usize = 200;

/// Whether a refusal is a failed image pull.
pub(crate) fn is_pull_failure(why: &str) -> bool {
    why.starts_with(CANNOT_PULL) || why.starts_with(PULL_TOOK_TOO_LONG)
}

pub struct DockerRuntime {
    connection: DockerConnection,
    docker: OnceCell<Engine>,
}

/// A connected client, and for a TLS engine the directory its key is read from: bollard
/// reads the client certificate at every handshake, so the files live as long as the
/// client (in a 0700 directory, removed when the runtime is dropped).
struct Engine {
    docker: Docker,
    _tls_files: Option<archive::PrivateDir>,
}

impl DockerRuntime {
    pub fn new(connection: DockerConnection) -> Self {
        Self { connection, docker: OnceCell::new() }
    }

    /// The engine's address: the profile's `docker_host`, else DOCKER_HOST, else the local socket.
    pub fn address(&self) -> String {
        self.connection
            .host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
    }

    /// The engine's client. Connects on first use and agrees on an API version: engines as
    /// old as Debian's 20.10 (API 1.41) must work. Public for `gocd-dind doctor`, which
    /// asks the engine what the pods will meet through this very connection.
    pub async fn docker(&self) -> Result<&Docker, RuntimeError> {
        let unreachable = |e: &dyn std::fmt::Display| RuntimeError::Unreachable(format!("{}: {e}", self.address()));
        let engine = self
            .docker
            .get_or_try_init(|| async {
                let (docker, tls_files) = connect(&self.connection).map_err(|e| unreachable(&e))?;
                let docker = docker.negotiate_version().await.map_err(|e| unreachable(&e))?;
                Ok::<_, RuntimeError>(Engine { docker, _tls_files: tls_files })
            })
            .await?;
        Ok(&engine.docker)
    }

    pub(super) async fn containers(
        &self,
        filters: HashMap<String, Vec<String>>,
    ) -> Result<Vec<ContainerSummary>, RuntimeError> {
        let docker = self.docker().await?;
        docker
            .list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() }))
            .await
            .map_err(|e| unreachable_or(&e, RuntimeError::Other))
    }

    /// Pulls the image unless the engine has it (what `create_pod` does first).
    pub async fn ensure_image(&self, image: &str) -> Result<(), RuntimeError> {
        let docker = self.docker().await?;
        if docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        let pull = async {
            let mut stream = docker.create_image(
                Some(CreateImageOptions { from_image: Some(image.to_owned()), ..Default::default() }),
                None,
                None,
            );
            while let Some(progress) = stream.next().await {
                progress.map_err(|e| RuntimeError::Rejected(format!("{CANNOT_PULL} {image}: {e}")))?;
            }
            Ok(())
        };
        tokio::time::timeout(PULL_TIMEOUT, pull).await.map_err(|_| {
            RuntimeError::Rejected(format!("{PULL_TOOK_TOO_LONG} {image} took over {} s", PULL_TIMEOUT.as_secs()))
        })?
    }

    pub(super) async fn create_container(&self, plan: &ContainerPlan) -> Result<(), RuntimeError> {
        self.create_container_or(plan, |e| RuntimeError::Rejected(format!("creating container {}: {e}", plan.name)))
            .await
    }

    /// [`Self::create_container`], with `refused` telling what the engine's refusal to
    /// create it means (a claim reads a name clash as a lost race).
    pub(super) async fn create_container_or(
        &self,
        plan: &ContainerPlan,
        refused: impl FnOnce(bollard::errors::Error) -> RuntimeError,
    ) -> Result<(), RuntimeError> {
        let docker = self.docker().await?;
        let body = self.with_path(plan).await;
        docker
            .create_container(
                Some(CreateContainerOptions { name: Some(plan.name.clone()), ..Default::default() }),
                body,
            )
            .await
            .map_err(refused)?;
        if !plan.files.is_empty() || !plan.open_dirs.is_empty() {
            let tar = archive::tar(&plan.files, &plan.open_dirs)
                .map_err(|e| RuntimeError::Other(format!("packing files: {e}")))?;
            docker
                .upload_to_container(
                    &plan.name,
                    Some(UploadToContainerOptions { path: "/".into(), ..Default::default() }),
                    bollard::body_full(tar.into()),
                )
                .await
                .map_err(|e| RuntimeError::Rejected(format!("placing files into {}: {e}", plan.name)))?;
        }
        docker.start_container(&plan.name, None::<StartContainerOptions>).await.map_err(|e| {
            let text = e.to_string();
            if plan.body.host_config.as_ref().and_then(|h| h.privileged) == Some(true) && (text.contains("operation not permitted") || text.contains("unable to apply caps")) {
                RuntimeError::Rejected(format!("this host refuses privileged containers ({text}); set dind_security = capabilities in the cluster profile"))
            } else {
                RuntimeError::Rejected(format!("starting container {}: {text}", plan.name))
            }
        })
    }

    /// The container's body with `path_prepend` in front of its `PATH`: the pod's own
    /// `PATH` when it sets one, else the image's.
    async fn with_path(&self, plan: &ContainerPlan) -> bollard::models::ContainerCreateBody {
        let mut body = plan.body.clone();
        if plan.path_prepend.is_empty() {
            return body;
        }
        let path_of = |env: &[String]| env.iter().find_map(|e| e.strip_prefix("PATH=").map(str::to_owned));
        let mut env = body.env.take().unwrap_or_default();
        let base = match path_of(&env) {
            Some(path) => Some(path),
            None => match self.docker().await {
                Ok(docker) => docker
                    .inspect_image(body.image.as_deref().unwrap_or_default())
                    .await
                    .ok()
                    .and_then(|image| image.config)
                    .and_then(|config| config.env)
                    .and_then(|image_env| path_of(&image_env)),
                Err(_) => None,
            },
        };
        let base = base.unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        env.retain(|e| !e.starts_with("PATH="));
        env.push(format!("PATH={}:{base}", plan.path_prepend.join(":")));
        body.env = Some(env);
        body
    }

    /// Runs the pod's startup probe in dind until it succeeds, dind exits, or the
    /// probe's budget (period × failure threshold) is spent. It polls every 100 ms rather
    /// than every period: dockerd answers within a second, and each wasted period would
    /// be added to every job's start.
    pub(super) async fn wait_ready(&self, pod: &DockerPod) -> Result<(), RuntimeError> {
        let docker = self.docker().await?;
        let started = Instant::now();
        let budget = Duration::from_secs(pod.probe_period_seconds * u64::from(pod.probe_attempts));
        let probe_timeout = Duration::from_secs(pod.probe_timeout_seconds);
        let why = loop {
            let probe = exec_succeeds(docker, &pod.dind.name, &pod.probe);
            if tokio::time::timeout(probe_timeout, probe).await == Ok(true) {
                return Ok(());
            }
            let state = docker.inspect_container(&pod.dind.name, None).await.ok().and_then(|c| c.state);
            if let Some(state) = state.filter(|s| s.running == Some(false)) {
                break format!("the dind container exited with code {}", state.exit_code.unwrap_or_default());
            }
            if started.elapsed() >= budget {
                break format!("no answer within the startup budget of {} s", budget.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        Err(RuntimeError::DaemonNotReady {
            pod: pod.name.clone(),
            why,
            seconds: started.elapsed().as_secs_f64(),
            log_tail: self.log_tail(&pod.dind.name, 20).await,
        })
    }

    async fn log_tail(&self, container: &str, lines: usize) -> String {
        let Ok(docker) = self.docker().await else { return String::new() };
        let options = LogsOptions { stdout: true, stderr: true, tail: lines.to_string(), ..Default::default() };
        let mut stream = docker.logs(container, Some(options));
        let mut text = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        text
    }

    async fn build(&self, pod: &DockerPod, start: &super::StartOptions) -> Result<(), RuntimeError> {
        self.ensure_image(pod.dind.body.image.as_deref().unwrap_or_default()).await?;
        self.ensure_image(pod.agent.body.image.as_deref().unwrap_or_default()).await?;
        for volume in &pod.volumes {
            self.create_volume(pod, volume).await?;
        }
        self.create_container(&pod.dind).await?;
        self.wait_ready(pod).await?;
        (start.dockerd_ready)();
        self.create_container(&pod.agent).await
    }
}

fn translated(pod: &AgentPod) -> Result<DockerPod, RuntimeError> {
    translate::translate(pod).map_err(|problems| {
        RuntimeError::Rejected(problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
    })
}

impl DockerRuntime {
    /// On failure, removes whatever of the pod was made (its ownership from its labels).
    async fn clean_up_after(
        &self,
        pod: &AgentPod,
        plan: &DockerPod,
        result: Result<(), RuntimeError>,
    ) -> Result<(), RuntimeError> {
        if result.is_err() {
            let labels = pod.pod.metadata.labels.clone().unwrap_or_default();
            let owner = Ownership {
                server_id: labels.get(label_keys::SERVER_ID).cloned().unwrap_or_default(),
                cluster: ClusterId(labels.get(label_keys::CLUSTER).cloned().unwrap_or_default()),
            };
            if let Err(e) = self.delete_pod(&owner, &plan.name).await {
                tracing::warn!(pod = %plan.name, error = %e, "cleaning up a failed pod failed; server-ping retries");
            }
        }
        result
    }
}

fn connect(connection: &DockerConnection) -> Result<(Docker, Option<archive::PrivateDir>), bollard::errors::Error> {
    let (Some(host), Some(ca), Some(cert), Some(key)) =
        (&connection.host, &connection.ca_cert, &connection.client_cert, &connection.client_key)
    else {
        let docker = match &connection.host {
            Some(host) if host.starts_with("unix://") => {
                Docker::connect_with_unix(host, CALL_TIMEOUT, bollard::API_DEFAULT_VERSION)
            }
            Some(host) => Docker::connect_with_http(host, CALL_TIMEOUT, bollard::API_DEFAULT_VERSION),
            None => Docker::connect_with_defaults().map(|d| d.with_timeout(Duration::from_secs(CALL_TIMEOUT))),
        };
        return docker.map(|d| (d, None));
    };
    let dir = archive::PrivateDir::new()?;
    let path = |name: &str, pem: &str| dir.write(name, pem);
    let (ca, cert, key) = (path("ca.pem", ca)?, path("cert.pem", cert)?, path("key.pem", key)?);
    let docker = Docker::connect_with_ssl(host, &key, &cert, &ca, CALL_TIMEOUT, bollard::API_DEFAULT_VERSION)?;
    Ok((docker, Some(dir)))
}

/// Runs `command` in a container, as `user` or the container's own; returns the exit
/// code and the combined output.
pub async fn exec(
    docker: &Docker,
    container: &str,
    user: Option<&str>,
    command: &[&str],
) -> Result<(i64, String), bollard::errors::Error> {
    let options = bollard::exec::CreateExecOptions {
        cmd: Some(command.to_vec()),
        user,
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let created = docker.create_exec(container, options).await?;
    let mut text = String::new();
    if let bollard::exec::StartExecResults::Attached { mut output, .. } = docker.start_exec(&created.id, None).await? {
        while let Some(chunk) = output.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk?.into_bytes()));
        }
    }
    Ok((docker.inspect_exec(&created.id).await?.exit_code.unwrap_or(-1), text))
}

async fn exec_succeeds(docker: &Docker, container: &str, command: &[String]) -> bool {
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    exec(docker, container, None, &command).await.is_ok_and(|(code, _)| code == 0)
}

fn unreachable_or(error: &bollard::errors::Error, other: fn(String) -> RuntimeError) -> RuntimeError {
    let text = error.to_string();
    if matches!(
        error,
        bollard::errors::Error::HyperResponseError { .. }
            | bollard::errors::Error::IOError { .. }
            | bollard::errors::Error::RequestTimeoutError
    ) {
        RuntimeError::Unreachable(text)
    } else {
        other(text)
    }
}

/// Removing what is already gone succeeds: deletion is idempotent.
fn gone_is_fine(result: Result<(), bollard::errors::Error>) -> Result<(), RuntimeError> {
    match result {
        Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
        Err(e) => Err(unreachable_or(&e, RuntimeError::Other)),
    }
}

fn filters(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), pairs.iter().map(|(k, v)| format!("{k}={v}")).collect())])
}

fn owner_filters(owner: &Ownership, extra: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    let selector = owner.selector();
    let mut pairs: Vec<(&str, &str)> = selector.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.extend_from_slice(extra);
    filters(&pairs)
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn describe(&self) -> Result<String, RuntimeError> {
        let docker = self.docker().await?;
        let version =
            docker.version().await.map_err(|e| RuntimeError::Unreachable(format!("{}: {e}", self.address())))?;
        Ok(format!(
            "Docker Engine {} (API {}) at {}",
            version.version.unwrap_or_default(),
            version.api_version.unwrap_or_default(),
            self.address()
        ))
    }

    /// The engine's ID (`docker info`), made at its installation and kept across
    /// restarts: the same whichever address reaches it.
    async fn identity(&self) -> Result<String, RuntimeError> {
        let docker = self.docker().await?;
        let info = docker.info().await.map_err(|e| RuntimeError::Unreachable(format!("{}: {e}", self.address())))?;
        info.id.filter(|id| !id.is_empty()).ok_or_else(|| {
            RuntimeError::Other(format!(
                "the engine at {} reports no ID (docker info): it cannot be told apart",
                self.address()
            ))
        })
    }

    fn unsupported(&self, pod: &AgentPod) -> Vec<String> {
        translate::unsupported(pod).iter().map(ToString::to_string).collect()
    }

    async fn list_pods(&self, owner: &Ownership) -> Result<Vec<PodInfo>, RuntimeError> {
        let containers = self.containers(owner_filters(owner, &[])).await?;
        let mut pods: HashMap<String, Vec<ContainerSummary>> = HashMap::new();
        for container in containers {
            if let Some(pod) = container.labels.as_ref().and_then(|l| l.get(label_keys::POD)).cloned() {
                pods.entry(pod).or_default().push(container);
            }
        }
        // Volumes without containers: a creation that died half-way. Listed as stopped
        // pods so server-ping removes them.
        let docker = self.docker().await?;
        let volumes = docker
            .list_volumes(Some(ListVolumesOptions { filters: Some(owner_filters(owner, &[])) }))
            .await
            .map_err(|e| unreachable_or(&e, RuntimeError::Other))?;
        let mut infos: Vec<PodInfo> =
            pods.into_iter().map(|(name, containers)| listing::pod_info(name, &containers)).collect();
        for volume in volumes.volumes.unwrap_or_default() {
            let pod = volume.labels.get(label_keys::POD).cloned().unwrap_or_default();
            if !pod.is_empty() && !infos.iter().any(|p| p.name == pod) {
                infos.push(PodInfo {
                    job_id: volume.labels.get(label_keys::JOB_ID).and_then(|j| j.parse().ok()).unwrap_or_default(),
                    name: pod,
                    job: None,
                    created: UNIX_EPOCH,
                    phase: PodPhase::Stopped("only volumes are left".into()),
                    warm: None,
                });
            }
        }
        Ok(infos)
    }

    async fn create_pod(&self, pod: &AgentPod, start: &super::StartOptions) -> Result<(), RuntimeError> {
        let plan = translated(pod)?;
        let result = self.build(&plan, start).await;
        self.clean_up_after(pod, &plan, result).await
    }

    fn supports_warm_pods(&self) -> bool {
        true
    }

    async fn create_warm_pod(&self, pod: &AgentPod, start: &super::StartOptions) -> Result<(), RuntimeError> {
        let plan = translated(pod)?;
        let result = self.build_warm(&plan, start).await;
        self.clean_up_after(pod, &plan, result).await
    }

    async fn claim_pod(&self, owner: &Ownership, claim: &AgentPod) -> Result<(), RuntimeError> {
        self.claim(owner, &translated(claim)?).await
    }

    async fn exec_in_dind(
        &self,
        owner: &Ownership,
        pod: &str,
        command: &[String],
    ) -> Result<(i64, String), RuntimeError> {
        let docker = self.docker().await?;
        let dind = translate::container_name(pod, DIND_CONTAINER);
        let inspected =
            docker.inspect_container(&dind, None).await.map_err(|e| unreachable_or(&e, RuntimeError::Other))?;
        let labels = inspected.config.and_then(|c| c.labels).unwrap_or_default();
        if !owner.selector().iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return Err(RuntimeError::Rejected(format!("{dind} is not a container of this server's cluster")));
        }
        let command: Vec<&str> = command.iter().map(String::as_str).collect();
        exec(docker, &dind, None, &command).await.map_err(|e| unreachable_or(&e, RuntimeError::Other))
    }

    async fn delete_pod(&self, owner: &Ownership, name: &str) -> Result<(), RuntimeError> {
        let docker = self.docker().await?;
        let mine = owner_filters(owner, &[(label_keys::POD, name)]);
        let volumes = docker.list_volumes(Some(ListVolumesOptions { filters: Some(mine.clone()) }));
        let (containers, volumes) = futures_util::join!(self.containers(mine), volumes);
        let volumes = volumes.map_err(|e| unreachable_or(&e, RuntimeError::Other))?.volumes.unwrap_or_default();
        // Both containers at once (force kills them), then the volumes they used.
        let removals = containers?.into_iter().map(|c| {
            let id = c.id.unwrap_or_default();
            let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
            async move { docker.remove_container(&id, Some(options)).await }
        });
        futures_util::future::join_all(removals).await.into_iter().try_for_each(gone_is_fine)?;
        let removals = volumes.iter().map(|v| docker.remove_volume(&v.name, Some(RemoveVolumeOptions { force: true })));
        futures_util::future::join_all(removals).await.into_iter().try_for_each(gone_is_fine)
    }

    async fn pod_details(&self, owner: &Ownership, name: &str) -> Result<Option<PodDetails>, RuntimeError> {
        let containers = self.containers(owner_filters(owner, &[(label_keys::POD, name)])).await?;
        if containers.is_empty() {
            return Ok(None);
        }
        let docker = self.docker().await?;
        let mut details = PodDetails::default();
        for c in &containers {
            let container = c.labels.as_ref().and_then(|l| l.get(label_keys::CONTAINER)).cloned().unwrap_or_default();
            if container == DIND_CONTAINER {
                let dind = translate::container_name(name, DIND_CONTAINER);
                details.dind_log_tail = self.log_tail(&dind, REPORT_LOG_LINES).await;
            }
            // The summary's status text says "Exited (137)"; the exit code and an OOM
            // kill are only in the container's own state.
            let inspected = docker.inspect_container(c.id.as_deref().unwrap_or_default(), None).await.ok();
            let state = inspected.as_ref().and_then(|i| i.state.as_ref());
            let ended = state.is_some_and(|s| {
                s.running == Some(false) && s.finished_at.as_deref().is_some_and(|f| !f.starts_with("0001-"))
            });
            details.containers.push(ContainerDetails {
                name: container,
                image: c.image.clone().unwrap_or_default(),
                state: c.status.clone().unwrap_or_default(),
                exit_code: state.and_then(|s| s.exit_code).filter(|_| ended),
                oom_killed: state.and_then(|s| s.oom_killed).unwrap_or(false),
                restarts: inspected.and_then(|i| i.restart_count).and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
            });
        }
        Ok(Some(details))
    }
}
