//! The test pod: built by [`pod::build`] exactly as create-agent builds a job's pod,
//! started by the runtime's own `create_pod` (which returns once dind's startup probe, an
//! API call over mutual TLS, passed and the agent container runs), and removed with
//! `delete_pod`, also when it failed or doctor was interrupted.

use std::time::{Duration, Instant};

use crate::pod::{self, Binding, Ownership, PodRequest, DIND_CONTAINER};
use crate::protocol::JobIdentifier;
use crate::runtime::docker::{translate, DockerRuntime};
use crate::runtime::kubernetes::KubernetesRuntime;
use crate::runtime::{Runtime, StartOptions};
use crate::settings::{ClusterId, ClusterSettings, ElasticSettings};

/// The server id of doctor's pods: no GoCD server has it, so no service ever counts,
/// lists or removes them, and they are easy to find: `-l gocd-dind.gocd.org/server-id=gocd-dind-doctor`.
pub const SERVER_ID: &str = "gocd-dind-doctor";

/// Where the test pod runs: the runtime, and how to read its dind's whole log.
#[derive(Clone, Copy)]
pub enum Place<'a> {
    Docker(&'a DockerRuntime),
    Kubernetes(&'a KubernetesRuntime),
}

impl Place<'_> {
    fn runtime(&self) -> &dyn Runtime {
        match self {
            Place::Docker(r) => *r,
            Place::Kubernetes(r) => *r,
        }
    }

    async fn dind_log(&self, pod: &str) -> String {
        let log = match self {
            Place::Docker(r) => docker_log(r, &translate::container_name(pod, DIND_CONTAINER)).await,
            Place::Kubernetes(r) => r.dind_log(pod).await,
        };
        log.unwrap_or_else(|e| format!("(dind's log could not be read: {e})"))
    }
}

async fn docker_log(runtime: &DockerRuntime, container: &str) -> Result<String, crate::runtime::RuntimeError> {
    use futures_util::StreamExt;
    let docker = runtime.docker().await?;
    let options = bollard::query_parameters::LogsOptions { stdout: true, stderr: true, ..Default::default() };
    let mut stream = docker.logs(container, Some(options));
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| crate::runtime::RuntimeError::Other(e.to_string()))?;
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    Ok(text)
}

/// A test pod that came up.
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    /// create-agent's work: submitted to dockerd answering over TLS and the agent running.
    pub seconds: f64,
    pub facts: DindFacts,
}

/// What dind's log says about the place it runs in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DindFacts {
    /// `v1` or `v2`, from the line the dind script prints.
    pub cgroup: Option<String>,
    /// From dockerd's "Docker daemon" line.
    pub storage_driver: Option<String>,
    pub dockerd_version: Option<String>,
}

impl DindFacts {
    pub fn read(log: &str) -> Self {
        let mut facts = Self::default();
        for line in log.lines() {
            if let Some(version) = line.trim().strip_prefix("gocd-dind: cgroup ") {
                facts.cgroup = Some(version.trim().to_owned());
            }
            if !line.contains("msg=\"Docker daemon\"") {
                continue;
            }
            // logrus' key=value text: `graphdriver(s)=overlay2` (20.10), `graphdriver=`,
            // `storage-driver=` (later releases), `version=20.10.24+dfsg1`.
            for word in line.split_whitespace() {
                if let Some((key, value)) = word.split_once('=') {
                    match key {
                        "graphdriver(s)" | "graphdriver" | "storage-driver" => {
                            facts.storage_driver = Some(value.to_owned());
                        }
                        "version" => facts.dockerd_version = Some(value.to_owned()),
                        _ => {}
                    }
                }
            }
        }
        facts
    }
}

/// Starts one pod for the profile, reads its dind's log and removes it.
pub async fn start(place: Place<'_>, settings: &ClusterSettings, budget: Duration) -> Result<Started, String> {
    let runtime = place.runtime();
    // The cluster label as the service sets it: from the engine's or namespace's identity.
    let identity = runtime.identity().await.map_err(|e| format!("the runtime cannot identify its place: {e}"))?;
    let name = pod::new_name();
    let owner = Ownership::new(SERVER_ID, ClusterId::of_identity(settings.runtime, &identity));
    let agent_pod = build(&name, &owner, settings)?;
    let unsupported = runtime.unsupported(&agent_pod);
    if !unsupported.is_empty() {
        return Err(format!("the runtime cannot run the pod: {}", unsupported.join("; ")));
    }
    let options =
        StartOptions { budget, progress: Box::new(|line| eprintln!("  ...   {line}")), dockerd_ready: Box::new(|| {}) };
    let began = Instant::now();
    let created = tokio::select! {
        created = runtime.create_pod(&agent_pod, &options) => Some(created),
        () = interrupted() => None,
    };
    let seconds = began.elapsed().as_secs_f64();
    let result = match created {
        Some(Ok(())) => Ok(Started { seconds, facts: DindFacts::read(&place.dind_log(&name).await) }),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("interrupted (SIGINT or SIGTERM); the test pod is being removed".into()),
    };
    // create_pod removes a pod that failed to start, but not one whose start was
    // interrupted; removing what is gone succeeds.
    if let Err(e) = runtime.delete_pod(&owner, &name).await {
        eprintln!("gocd-dind doctor: the test pod {name} could not be removed ({e}); remove it by its labels: app.kubernetes.io/managed-by=gocd-dind, gocd-dind.gocd.org/server-id={SERVER_ID}");
    }
    result
}

fn build(name: &str, owner: &Ownership, settings: &ClusterSettings) -> Result<pod::AgentPod, String> {
    let tls = crate::tls::mint(name).map_err(|e| format!("minting the pod's certificates: {e}"))?;
    let job = JobIdentifier {
        pipeline_name: SERVER_ID.into(),
        stage_name: "doctor".into(),
        job_name: "test-pod".into(),
        ..JobIdentifier::default()
    };
    let key = uuid::Uuid::new_v4().to_string();
    let request = PodRequest {
        name,
        ownership: owner,
        // The agent never gets to register: the pod is removed as soon as it runs.
        go_server_url: settings.go_server_url.as_deref().unwrap_or("https://gocd.invalid/go"),
        cluster: settings,
        elastic: &ElasticSettings::default(),
        binding: Binding::Job { job: &job, environment: None, auto_register_key: &key },
        tls: Some(&tls),
    };
    pod::build(&request).map_err(|e| e.to_string())
}

/// Completes at SIGINT or SIGTERM (never, when the handlers cannot be installed).
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dind_facts_come_from_the_scripts_line_and_dockerds_own() {
        let log = "gocd-dind: cgroup v1\n\
            time=\"2026-12-01T10:00:00Z\" level=info msg=\"Loading containers: done.\"\n\
            time=\"2026-12-01T10:00:00Z\" level=info msg=\"Docker daemon\" commit=\"20.10.24+dfsg1\" graphdriver(s)=overlay2 version=20.10.24+dfsg1\n";
        let facts = DindFacts::read(log);
        assert_eq!(facts.cgroup.as_deref(), Some("v1"));
        assert_eq!(facts.storage_driver.as_deref(), Some("overlay2"));
        assert_eq!(facts.dockerd_version.as_deref(), Some("20.10.24+dfsg1"));
        let newer = "time=\"x\" level=info msg=\"Docker daemon\" commit=abc containerd-snapshotter=false storage-driver=vfs version=27.3.1";
        assert_eq!(DindFacts::read(newer).storage_driver.as_deref(), Some("vfs"));
        assert_eq!(DindFacts::read("nothing here"), DindFacts::default());
    }
}
