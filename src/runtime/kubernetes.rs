//! The Kubernetes runtime (kube-rs): the agent pod submitted as it is built, with its
//! Secret owned by the pod so the API server's garbage collector removes the TLS
//! material and the register key together with the pod.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::{Client, Config};

use super::{ContainerDetails, PodDetails, PodInfo, PodPhase, Runtime, RuntimeError};
use crate::pod::{annotation, label_keys, secret_name, AgentPod, Ownership, AGENT_CONTAINER, DIND_CONTAINER};
use crate::settings::KubernetesConnection;

/// How long create-agent's pod may take to get its agent running (image pulls
/// included) before it is given up and removed.
const START_BUDGET: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_secs(1);
/// Waiting reasons that will not resolve by waiting.
const HOPELESS: &[&str] = &["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff"];

pub struct KubernetesRuntime {
    client: Client,
    namespace: String,
}

impl KubernetesRuntime {
    /// Builds the client from the cluster profile; a profile that names no API server
    /// outside a cluster is refused here, with what to set.
    pub fn connect(connection: &KubernetesConnection) -> Result<Self, RuntimeError> {
        let config = config(connection).map_err(RuntimeError::Rejected)?;
        let namespace = config.default_namespace.clone();
        let client = Client::try_from(config).map_err(|e| RuntimeError::Rejected(format!("kubernetes client: {e}")))?;
        Ok(Self { client, namespace })
    }

    /// A runtime over a given client (tests pass a mock API server).
    pub fn with_client(client: Client, namespace: &str) -> Self {
        Self { client, namespace: namespace.to_owned() }
    }

    fn pods(&self) -> (Api<Pod>, Api<Secret>) {
        (Api::namespaced(self.client.clone(), &self.namespace), Api::namespaced(self.client.clone(), &self.namespace))
    }

    /// Waits until the agent container runs; native-sidecar ordering means dind's
    /// startup probe (a TLS API call) passed first.
    async fn wait_running(&self, pods: &Api<Pod>, name: &str) -> Result<(), RuntimeError> {
        let started = Instant::now();
        loop {
            let pod = pods.get(name).await.map_err(api_error)?;
            match phase(&pod) {
                PodPhase::Running => return Ok(()),
                PodPhase::Stopped(why) => return Err(self.not_ready(pods, name, started, why).await),
                PodPhase::Starting => {}
            }
            if let Some(reason) = hopeless(&pod) {
                return Err(self.not_ready(pods, name, started, reason).await);
            }
            if started.elapsed() >= START_BUDGET {
                return Err(self.not_ready(pods, name, started, "the start budget ran out".into()).await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn not_ready(&self, pods: &Api<Pod>, name: &str, started: Instant, why: String) -> RuntimeError {
        RuntimeError::DaemonNotReady {
            pod: name.to_owned(),
            why,
            seconds: started.elapsed().as_secs_f64(),
            log_tail: dind_log_tail(pods, name).await,
        }
    }
}

fn config(connection: &KubernetesConnection) -> Result<Config, String> {
    let mut config = match &connection.cluster_url {
        Some(url) => {
            let mut config = Config::new(url.parse().map_err(|e| format!("kubernetes_cluster_url {url}: {e}"))?);
            if let Some(ca) = &connection.ca_cert {
                let certs = pem::parse_many(ca).map_err(|e| format!("kubernetes_cluster_ca_cert: {e}"))?;
                config.root_cert = Some(certs.into_iter().map(pem::Pem::into_contents).collect());
            }
            config.auth_info.token = connection.security_token.clone().map(Into::into);
            config
        }
        None => Config::incluster().map_err(|e| {
            format!("no kubernetes_cluster_url and not running in a cluster ({e}): set the cluster URL, token and CA")
        })?,
    };
    if let Some(namespace) = &connection.namespace {
        namespace.clone_into(&mut config.default_namespace);
    }
    config.connect_timeout = Some(connection.request_timeout);
    config.read_timeout = Some(connection.request_timeout);
    config.write_timeout = Some(connection.request_timeout);
    Ok(config)
}

fn api_error(error: kube::Error) -> RuntimeError {
    match error {
        kube::Error::Api(status) if status.code == 403 && status.message.contains("PodSecurity") => {
            RuntimeError::Rejected(format!(
                "the namespace's Pod Security admission refuses the dind container ({}): allow privileged pods \
                 there, e.g. label the namespace pod-security.kubernetes.io/enforce=privileged",
                status.message
            ))
        }
        kube::Error::Api(status) if status.code == 403 || status.code == 401 => RuntimeError::Rejected(format!(
            "the API server refused ({}): check the token's RBAC: {}",
            status.code, status.message
        )),
        kube::Error::Api(status) => RuntimeError::Rejected(format!("{} ({})", status.message, status.code)),
        other => RuntimeError::Unreachable(other.to_string()),
    }
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

fn owned(pod: &Pod, owner: &Ownership) -> bool {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    owner.selector().iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn selector(owner: &Ownership) -> String {
    owner.selector().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

fn phase(pod: &Pod) -> PodPhase {
    let status = pod.status.clone().unwrap_or_default();
    if let Some(phase @ ("Failed" | "Succeeded")) = status.phase.as_deref() {
        return PodPhase::Stopped(format!("pod {}: {}", phase.to_lowercase(), status.message.unwrap_or_default()));
    }
    let agent = status.container_statuses.iter().flatten().find(|c| c.name == AGENT_CONTAINER);
    match agent.and_then(|c| c.state.as_ref()) {
        Some(state) if state.running.is_some() => PodPhase::Running,
        Some(state) if state.terminated.is_some() => {
            let terminated = state.terminated.clone().unwrap_or_default();
            PodPhase::Stopped(format!("agent exited with code {}", terminated.exit_code))
        }
        _ => PodPhase::Starting,
    }
}

fn hopeless(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let mut all = status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
    all.find_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        HOPELESS
            .contains(&reason)
            .then(|| format!("{}: {reason}: {}", c.name, waiting.message.clone().unwrap_or_default()))
    })
}

async fn dind_log_tail(pods: &Api<Pod>, name: &str) -> String {
    let params = LogParams { container: Some(DIND_CONTAINER.into()), tail_lines: Some(30), ..LogParams::default() };
    pods.logs(name, &params).await.unwrap_or_default()
}

fn pod_info(pod: &Pod) -> PodInfo {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let created =
        pod.metadata.creation_timestamp.as_ref().map_or(UNIX_EPOCH, |t| {
            UNIX_EPOCH + Duration::from_secs(u64::try_from(t.0.as_second()).unwrap_or_default())
        });
    PodInfo {
        name: pod.metadata.name.clone().unwrap_or_default(),
        job_id: labels.get(label_keys::JOB_ID).and_then(|j| j.parse().ok()).unwrap_or_default(),
        job: annotations.get(annotation::JOB_IDENTIFIER).and_then(|j| serde_json::from_str(j).ok()),
        created: if created == UNIX_EPOCH { SystemTime::now() } else { created },
        phase: phase(pod),
    }
}

#[async_trait]
impl Runtime for KubernetesRuntime {
    async fn describe(&self) -> Result<String, RuntimeError> {
        let version = self.client.apiserver_version().await.map_err(api_error)?;
        Ok(format!("Kubernetes {} (namespace {})", version.git_version, self.namespace))
    }

    async fn list_pods(&self, owner: &Ownership) -> Result<Vec<PodInfo>, RuntimeError> {
        let (pods, _) = self.pods();
        let list = pods.list(&ListParams::default().labels(&selector(owner))).await.map_err(api_error)?;
        Ok(list.items.iter().map(pod_info).collect())
    }

    async fn create_pod(&self, pod: &AgentPod) -> Result<(), RuntimeError> {
        let (pods, secrets) = self.pods();
        let name = pod.pod.metadata.name.clone().unwrap_or_default();
        let created = pods.create(&PostParams::default(), &pod.pod).await.map_err(api_error)?;
        // The Secret is owned by the pod, so deleting the pod deletes it. Until it exists
        // the kubelet keeps the pod waiting for its volumes.
        let mut secret = pod.secret.clone();
        secret.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: name.clone(),
            uid: created.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        let result = match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => self.wait_running(&pods, &name).await,
            Err(e) => Err(api_error(e)),
        };
        if result.is_err() {
            let _ = pods.delete(&name, &DeleteParams::default()).await;
            let _ = secrets.delete(&secret_name(&name), &DeleteParams::default()).await;
        }
        result
    }

    async fn delete_pod(&self, owner: &Ownership, name: &str) -> Result<(), RuntimeError> {
        let (pods, secrets) = self.pods();
        match pods.get(name).await {
            Ok(pod) if !owned(&pod, owner) => return Ok(()), // someone else's: leave it
            Ok(_) => match pods.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(api_error(e)),
            },
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(api_error(e)),
        }
        // Normally collected with the pod; removed here too so no key outlives it.
        match secrets.delete(&secret_name(name), &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(api_error(e)),
        }
    }

    async fn pod_details(&self, owner: &Ownership, name: &str) -> Result<Option<PodDetails>, RuntimeError> {
        let (pods, _) = self.pods();
        let pod = match pods.get(name).await {
            Ok(pod) if owned(&pod, owner) => pod,
            Ok(_) => return Ok(None),
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(api_error(e)),
        };
        let status = pod.status.clone().unwrap_or_default();
        let containers = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten())
            .map(|c| ContainerDetails {
                name: c.name.clone(),
                image: c.image.clone(),
                state: match &c.state {
                    Some(s) if s.running.is_some() => "running".into(),
                    Some(s) if s.terminated.is_some() => "terminated".into(),
                    Some(s) => s.waiting.as_ref().and_then(|w| w.reason.clone()).unwrap_or_else(|| "waiting".into()),
                    None => "unknown".into(),
                },
            })
            .collect();
        Ok(Some(PodDetails { containers, dind_log_tail: dind_log_tail(&pods, name).await }))
    }
}
