//! Warm pods on a Docker Engine. A warm pod is the pod without its agent container: the
//! volumes, dind up and answering over TLS, and the agent's client certificate and key
//! kept in a volume of their own (`<pod>-agent-tls`), since nothing can be added to a
//! container that does not exist yet. A claim creates the agent container then, in dind's
//! network namespace, on the pod's volumes, with the job's labels, register key and
//! environment, and the client material mounted from that volume.
//!
//! Container labels cannot change, so the binding to the job lives on the agent
//! container's labels (and in the service's registry): a restarted service finds it there.
//! The agent container's name is the pod's (`<pod>-agent`), so the engine itself refuses
//! a second claim of one pod (a name clash, 409: the loser's `AlreadyClaimed`).

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, VolumeCreateRequest};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions, UploadToContainerOptions};

use super::translate::{self, ContainerPlan, DockerPod};
use super::{archive, unreachable_or, DockerRuntime};
use crate::pod::{label_keys, pool_of, Ownership, DIND_CONTAINER, TLS_DIR};
use crate::runtime::{RuntimeError, StartOptions};

/// The volume that keeps a warm pod's client certificate and key for its agent.
pub fn agent_tls_volume(pod: &str) -> String {
    translate::volume_name(pod, "agent-tls")
}

/// The container that writes them there: created, filled and removed, never started.
const STASH: &str = "stash";

impl DockerRuntime {
    /// Everything of the pod but its agent container, up to dockerd answering over TLS.
    pub(super) async fn build_warm(&self, pod: &DockerPod, start: &StartOptions) -> Result<(), RuntimeError> {
        let dind_image = pod.dind.body.image.as_deref().unwrap_or_default();
        self.ensure_image(dind_image).await?;
        // A claim must not wait for a pull.
        self.ensure_image(pod.agent.body.image.as_deref().unwrap_or_default()).await?;
        let stash_volume = agent_tls_volume(&pod.name);
        for volume in pod.volumes.iter().chain([&stash_volume]) {
            self.create_volume(pod, volume).await?;
        }
        self.stash_agent_tls(pod, dind_image, &stash_volume).await?;
        self.create_container(&pod.dind).await?;
        self.wait_ready(pod).await?;
        (start.dockerd_ready)();
        Ok(())
    }

    pub(super) async fn create_volume(&self, pod: &DockerPod, volume: &str) -> Result<(), RuntimeError> {
        let mut labels = pod.labels.clone();
        labels.insert(label_keys::VOLUME.into(), volume.to_owned());
        let request = VolumeCreateRequest { name: Some(volume.to_owned()), labels: Some(labels), ..Default::default() };
        self.docker()
            .await?
            .create_volume(request)
            .await
            .map_err(|e| RuntimeError::Rejected(format!("creating volume {volume}: {e}")))?;
        Ok(())
    }

    /// Writes the agent's TLS files into `volume` through a container that mounts it and
    /// is never started; the files never touch the host's filesystem, and dind never
    /// mounts the volume.
    async fn stash_agent_tls(&self, pod: &DockerPod, image: &str, volume: &str) -> Result<(), RuntimeError> {
        let docker = self.docker().await?;
        let name = translate::container_name(&pod.name, STASH);
        let mut labels = pod.labels.clone();
        labels.insert(label_keys::CONTAINER.into(), STASH.into());
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            labels: Some(labels),
            network_disabled: Some(true),
            host_config: Some(HostConfig { mounts: Some(vec![tls_mount(volume, false)]), ..HostConfig::default() }),
            ..ContainerCreateBody::default()
        };
        let options = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
        docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| RuntimeError::Rejected(format!("creating container {name}: {e}")))?;
        let files: Vec<_> = pod.agent.files.iter().filter(|f| f.path.starts_with(TLS_DIR)).cloned().collect();
        let tar = archive::tar(&files, &[]).map_err(|e| RuntimeError::Other(format!("packing files: {e}")))?;
        let uploaded = docker
            .upload_to_container(
                &name,
                Some(UploadToContainerOptions { path: "/".into(), ..Default::default() }),
                bollard::body_full(tar.into()),
            )
            .await
            .map_err(|e| RuntimeError::Rejected(format!("placing the agent's TLS files into {volume}: {e}")));
        let removed = docker.remove_container(&name, Some(RemoveContainerOptions::default())).await;
        uploaded?;
        removed.map_err(|e| unreachable_or(&e, RuntimeError::Other))
    }

    /// Creates and starts the agent container of warm pod `claim.name` for the job the
    /// claim was built for. Refused when the pod is not an unclaimed warm pod of `owner`
    /// whose dockerd runs; `AlreadyClaimed` when its agent container exists already.
    /// One inspection of dind (this is on the job's wait): ours, a warm pod's, running.
    /// That no agent container exists yet the engine checks itself when the claim
    /// creates one under the pod's agent name.
    pub(super) async fn claim(&self, owner: &Ownership, claim: &DockerPod) -> Result<(), RuntimeError> {
        let dind = translate::container_name(&claim.name, DIND_CONTAINER);
        let inspected = self.docker().await?.inspect_container(&dind, None).await.map_err(|e| match e {
            bollard::errors::Error::DockerResponseServerError { status_code: 404, .. } => {
                RuntimeError::Rejected(format!("warm pod {} is gone", claim.name))
            }
            e => unreachable_or(&e, RuntimeError::Other),
        })?;
        let labels = inspected.config.and_then(|c| c.labels).unwrap_or_default();
        let ours = owner.selector().iter().all(|(k, v)| labels.get(k) == Some(v))
            && labels.get(label_keys::POD) == Some(&claim.name);
        if !ours || pool_of(|k| labels.get(k).cloned()).is_none() {
            return Err(RuntimeError::Rejected(format!("{} is not a warm pod of this server's cluster", claim.name)));
        }
        if inspected.state.and_then(|s| s.running) != Some(true) {
            return Err(RuntimeError::Rejected(format!("the dockerd of warm pod {} is not running", claim.name)));
        }
        let agent = agent_of_claim(claim);
        self.create_container_or(&agent, |e| match e {
            // Another claim (of this service or one sharing the engine) made the pod's
            // agent container first: the pod serves its job now.
            bollard::errors::Error::DockerResponseServerError { status_code: 409, message } => {
                RuntimeError::AlreadyClaimed(format!("warm pod {} was claimed meanwhile: {message}", claim.name))
            }
            e => RuntimeError::Rejected(format!("creating container {}: {e}", agent.name)),
        })
        .await
    }
}

/// The claim's agent container with the warm pod's client material mounted from its
/// volume (the claim carries none).
fn agent_of_claim(claim: &DockerPod) -> ContainerPlan {
    let mut agent = claim.agent.clone();
    agent.files.retain(|f| !f.path.starts_with(TLS_DIR));
    let host = agent.body.host_config.get_or_insert_with(HostConfig::default);
    let mounts = host.mounts.get_or_insert_with(Vec::new);
    mounts.retain(|m| m.target.as_deref() != Some(TLS_DIR));
    mounts.push(tls_mount(&agent_tls_volume(&claim.name), true));
    agent
}

fn tls_mount(volume: &str, read_only: bool) -> Mount {
    Mount {
        target: Some(TLS_DIR.to_owned()),
        source: Some(volume.to_owned()),
        typ: Some(MountType::VOLUME),
        read_only: Some(read_only),
        ..Mount::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::{build, Binding, PodRequest};
    use crate::protocol::{JobIdentifier, Properties};
    use crate::settings::{ClusterId, ClusterSettings, ElasticSettings};

    #[test]
    fn a_claims_agent_joins_the_warm_pod_and_mounts_its_client_material() {
        let cluster = ClusterSettings::parse(&Properties::from_pairs(&[("agent_image", "a:1")]), false).unwrap();
        let elastic = ElasticSettings::default();
        let job = JobIdentifier { job_id: 5, ..JobIdentifier::default() };
        let claim = build(&PodRequest {
            name: "w1",
            ownership: &Ownership::new("s", ClusterId("c".into())),
            go_server_url: "https://gocd.example.com/go",
            cluster: &cluster,
            elastic: &elastic,
            binding: Binding::Job { job: &job, environment: Some("prod"), auto_register_key: "key-5" },
            tls: None,
        })
        .unwrap();
        let plan = translate::translate(&claim).unwrap();
        let agent = agent_of_claim(&plan);
        assert_eq!(agent.name, "w1-agent");
        assert!(agent.files.is_empty(), "no TLS material travels with a claim");
        let host = agent.body.host_config.as_ref().unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("container:w1-dind"));
        let tls = host.mounts.iter().flatten().find(|m| m.target.as_deref() == Some(TLS_DIR)).unwrap();
        assert_eq!((tls.source.as_deref(), tls.read_only), (Some("w1-agent-tls"), Some(true)));
        let sources: Vec<_> = host.mounts.iter().flatten().filter_map(|m| m.source.as_deref()).collect();
        assert!(sources.contains(&"w1-godata"), "the warm pod's workspace: {sources:?}");
        let env = agent.body.env.as_ref().unwrap();
        assert!(env.contains(&"GO_EA_AUTO_REGISTER_KEY=key-5".to_owned()));
        assert!(env.contains(&"GO_EA_AUTO_REGISTER_ENVIRONMENT=prod".to_owned()));
        let labels = agent.body.labels.as_ref().unwrap();
        assert_eq!((labels[label_keys::JOB_ID].as_str(), labels[label_keys::CONTAINER].as_str()), ("5", "agent"));
    }
}
