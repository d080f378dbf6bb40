//! The narrow port every effect on pods goes through. Two real implementations realise
//! the same `AgentPod`: Docker Engine via bollard (proven end to end in CI), and
//! Kubernetes via kube-rs (tested against a mock API server). An in-memory one (feature
//! `test-doubles`, never in the release binary) lets the GoCD rules be tested without a
//! daemon.

pub mod docker;
pub mod kubernetes;
#[cfg(feature = "test-doubles")]
pub mod memory;

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

/// What a listing reports; defined with the rules that decide over it.
pub use crate::listing::{PodInfo, PodPhase};
use crate::pod::{AgentPod, Ownership};
use crate::settings::{ClusterSettings, DockerConnection, KubernetesConnection, RuntimeKind};

/// What a status report shows about one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodDetails {
    pub containers: Vec<ContainerDetails>,
    /// Pod-level facts worth a line: why it is not scheduled, that it is being deleted.
    pub notes: Vec<String>,
    /// The last lines of dockerd's output: why a daemon did not come up.
    pub dind_log_tail: String,
    /// What Kubernetes recorded about the pod (scheduling, pulls, probes), oldest first;
    /// always empty on Docker, which keeps no such record.
    pub events: Vec<PodEvent>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerDetails {
    pub name: String,
    pub image: String,
    pub state: String,
    /// The exit code of its last run, once it ended.
    pub exit_code: Option<i64>,
    /// The kernel killed it for exceeding its memory limit.
    pub oom_killed: bool,
    pub restarts: u32,
}

/// One Kubernetes event about a pod, as `kubectl describe pod` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEvent {
    pub at: Option<SystemTime>,
    pub warning: bool,
    pub reason: String,
    pub message: String,
    pub count: u32,
}

/// Why a pod could not be started, in the few kinds an operator alerts on (the `reason`
/// label of `gocd_dind_pod_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureReason {
    /// An image could not be pulled (name, tag, registry access).
    ImagePull,
    /// No node could take the pod within its start budget (Kubernetes).
    Unschedulable,
    /// dockerd did not answer over TLS: dind exited or never became ready.
    DindNotReady,
    /// The engine or API server refused the pod (RBAC, admission, privileged refused).
    Rejected,
    /// The engine or API server could not be reached.
    Unreachable,
    Other,
}

impl FailureReason {
    pub const ALL: [Self; 6] =
        [Self::ImagePull, Self::Unschedulable, Self::DindNotReady, Self::Rejected, Self::Unreachable, Self::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImagePull => "image_pull",
            Self::Unschedulable => "unschedulable",
            Self::DindNotReady => "dind_not_ready",
            Self::Rejected => "rejected",
            Self::Unreachable => "unreachable",
            Self::Other => "other",
        }
    }
}

/// Kubernetes's waiting reasons for an image that cannot be had.
const IMAGE_PULL_REASONS: &[&str] = &["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"];

#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot reach the container runtime: {0}")]
    Unreachable(String),
    #[error("the runtime refused: {0}")]
    Rejected(String),
    #[error(
        "dockerd in pod {pod} did not answer over TLS after {seconds:.1} s ({why}); last lines of its log:\n{log_tail}"
    )]
    DaemonNotReady { pod: String, why: String, seconds: f64, log_tail: String },
    /// A claim found its warm pod bound to a job already: another claim (of this
    /// process, or of another service sharing the cluster) won it. The pod serves that
    /// claim's job now, so the loser must leave it alone.
    #[error("{0}")]
    AlreadyClaimed(String),
    #[error("{0}")]
    Other(String),
}

impl RuntimeError {
    /// The error without the log lines it carries.
    pub fn summary(&self) -> String {
        match self {
            Self::DaemonNotReady { pod, why, seconds, .. } => {
                format!("dockerd in pod {pod} did not answer over TLS after {seconds:.1} s ({why})")
            }
            other => other.to_string(),
        }
    }

    /// dockerd's last lines, when the error carries them.
    pub fn log_tail(&self) -> &str {
        match self {
            Self::DaemonNotReady { log_tail, .. } => log_tail,
            _ => "",
        }
    }

    /// The kind of failure, read from what the runtimes say: Kubernetes's own waiting
    /// reasons, and the runtimes' fixed phrases for a failed pull and an unschedulable pod.
    pub fn reason(&self) -> FailureReason {
        match self {
            Self::Unreachable(_) => FailureReason::Unreachable,
            Self::Rejected(why) if docker::is_pull_failure(why) => FailureReason::ImagePull,
            Self::Rejected(_) => FailureReason::Rejected,
            Self::DaemonNotReady { why, .. } if IMAGE_PULL_REASONS.iter().any(|r| why.contains(r)) => {
                FailureReason::ImagePull
            }
            Self::DaemonNotReady { why, .. } if why.starts_with(kubernetes::NOT_SCHEDULED) => {
                FailureReason::Unschedulable
            }
            Self::DaemonNotReady { .. } => FailureReason::DindNotReady,
            Self::AlreadyClaimed(_) | Self::Other(_) => FailureReason::Other,
        }
    }
}

/// What starting a pod may spend, and whom it tells while it waits.
pub struct StartOptions {
    /// How long the pod may take to get its agent running, scheduling and image pulls
    /// included, before it is given up and removed.
    pub budget: std::time::Duration,
    /// Called with a line for the job's console when the pod is held up for a reason the
    /// operator can act on (e.g. no node fits it).
    pub progress: Box<dyn Fn(String) + Send + Sync>,
    /// Called once, when dockerd first answers over TLS (the pod's timeline and the
    /// `pod_ready` stage of the start-latency histogram).
    pub dockerd_ready: Box<dyn Fn() + Send + Sync>,
}

const NO_WARM_PODS: &str = "this runtime keeps no warm pods";

#[async_trait]
pub trait Runtime: Send + Sync {
    /// A short description for reports and errors, e.g. the engine's address and version.
    async fn describe(&self) -> Result<String, RuntimeError>;
    /// Who this engine is, whatever a profile calls it: the Docker engine's own ID, or
    /// the UID of the Kubernetes namespace the pods live in (unique to the cluster and
    /// the namespace). Pods are labelled with the cluster it names
    /// (`ClusterId::of_identity`), so two spellings of one place share their pods. The
    /// service asks once per spelling and remembers the answer.
    async fn identity(&self) -> Result<String, RuntimeError>;
    /// Pod fields this runtime cannot honour, each with the reason; checked before
    /// anything is created so nothing is silently dropped.
    fn unsupported(&self, _pod: &AgentPod) -> Vec<String> {
        Vec::new()
    }
    /// Whether this runtime keeps warm pods (elastic profiles' `WarmPoolSize`): the three
    /// calls below.
    fn supports_warm_pods(&self) -> bool {
        false
    }
    /// Creates a warm pod (built with [`crate::pod::Binding::Warm`]: nothing of a job in
    /// it) and returns once its dockerd answers over TLS. On Docker its agent container
    /// is made only when a job claims it. On failure nothing of the pod is left.
    async fn create_warm_pod(&self, _pod: &AgentPod, _start: &StartOptions) -> Result<(), RuntimeError> {
        Err(RuntimeError::Rejected(NO_WARM_PODS.into()))
    }
    /// Binds the warm pod `claim` names to the job `claim` was built for
    /// ([`crate::pod::Binding::Job`], no TLS material: the pod has its own) and starts
    /// its agent with the job's register key and environment; returns once the agent
    /// started. Refused, binding nothing, when the pod is not an unclaimed warm pod of
    /// `owner`: two claims of one pod, even from two processes, bind it once. The loser
    /// gets [`RuntimeError::AlreadyClaimed`] (the pod is bound to a job already), which
    /// tells it apart from a pod that cannot be claimed at all: the loser must not remove
    /// a pod that now serves the winner's job.
    async fn claim_pod(&self, _owner: &Ownership, _claim: &AgentPod) -> Result<(), RuntimeError> {
        Err(RuntimeError::Rejected(NO_WARM_PODS.into()))
    }
    /// Runs `command` in the pod's dind container; its exit code and output. Pre-pulls
    /// run `docker pull` there, against the pod's own dockerd.
    async fn exec_in_dind(
        &self,
        _owner: &Ownership,
        _pod: &str,
        _command: &[String],
    ) -> Result<(i64, String), RuntimeError> {
        Err(RuntimeError::Rejected(NO_WARM_PODS.into()))
    }
    /// Every pod that carries these ownership labels.
    async fn list_pods(&self, owner: &Ownership) -> Result<Vec<PodInfo>, RuntimeError>;
    /// Creates the pod and returns once its agent container has started, which happens
    /// only after dockerd answered over TLS. On failure nothing of the pod is left.
    async fn create_pod(&self, pod: &AgentPod, start: &StartOptions) -> Result<(), RuntimeError>;
    /// Removes the pod and everything it owns. Removing a pod that is gone succeeds.
    async fn delete_pod(&self, owner: &Ownership, name: &str) -> Result<(), RuntimeError>;
    /// Details for the agent status report; `None` when there is no such pod.
    async fn pod_details(&self, owner: &Ownership, name: &str) -> Result<Option<PodDetails>, RuntimeError>;
    /// What the runtime recorded about a pod by this name, also after it is gone (a pod
    /// that failed to start); oldest first. Only Kubernetes keeps such records.
    async fn pod_events(&self, _name: &str) -> Result<Vec<PodEvent>, RuntimeError> {
        Ok(Vec::new())
    }
}

/// Hands out the runtime a cluster profile points at.
pub trait RuntimeProvider: Send + Sync {
    fn runtime(&self, cluster: &ClusterSettings) -> Result<Arc<dyn Runtime>, RuntimeError>;

    /// Forgets the runtimes (clients, credentials, files) of places no profile in `live`
    /// points at any more. `live` is every cluster profile GoCD has.
    fn retain(&self, _live: &[ClusterSettings]) {}
}

/// The service's provider: one runtime per place (engine or API server, with its
/// credentials), shared by every cluster profile that points there and replaced when the
/// profile's connection changes; in test builds, the in-memory runtime when the service
/// runs with `--allow-memory-runtime` (tests that drive the real binary).
pub struct Runtimes {
    #[cfg(feature = "test-doubles")]
    memory: Option<Arc<memory::MemoryRuntime>>,
    /// By `ClusterSettings::place`: the address as spelled, with its credentials.
    cache: std::sync::Mutex<std::collections::HashMap<String, Cached>>,
}

/// A runtime and the connection it was made for.
type Cached = (Connection, Arc<dyn Runtime>);

#[derive(Clone, PartialEq, Eq)]
enum Connection {
    Docker(DockerConnection),
    Kubernetes(KubernetesConnection),
}

impl Runtimes {
    pub fn new() -> Self {
        Self {
            #[cfg(feature = "test-doubles")]
            memory: None,
            cache: std::sync::Mutex::default(),
        }
    }

    /// Also hands out `memory` for `runtime = memory` profiles.
    #[cfg(feature = "test-doubles")]
    pub fn with_memory(memory: Arc<memory::MemoryRuntime>) -> Self {
        Self { memory: Some(memory), ..Self::new() }
    }
}

impl Default for Runtimes {
    fn default() -> Self {
        Self::new()
    }
}

impl RuntimeProvider for Runtimes {
    fn runtime(&self, cluster: &ClusterSettings) -> Result<Arc<dyn Runtime>, RuntimeError> {
        let connection = match cluster.runtime {
            #[cfg(feature = "test-doubles")]
            RuntimeKind::Memory => {
                return self.memory.clone().map(|m| m as Arc<dyn Runtime>).ok_or_else(|| {
                    RuntimeError::Rejected(
                        "runtime = memory is for tests: start the service with --allow-memory-runtime".into(),
                    )
                })
            }
            RuntimeKind::Docker => Connection::Docker(cluster.docker.clone()),
            RuntimeKind::Kubernetes => Connection::Kubernetes(cluster.kubernetes.clone()),
        };
        let mut cache = self.cache.lock().unwrap();
        if let Some((cached, runtime)) = cache.get(&cluster.place()) {
            if *cached == connection {
                return Ok(runtime.clone());
            }
        }
        let runtime: Arc<dyn Runtime> = match &connection {
            Connection::Docker(c) => Arc::new(docker::DockerRuntime::new(c.clone())),
            Connection::Kubernetes(c) => Arc::new(kubernetes::KubernetesRuntime::connect(c)?),
        };
        cache.insert(cluster.place(), (connection, runtime.clone()));
        Ok(runtime)
    }

    fn retain(&self, live: &[ClusterSettings]) {
        let live: std::collections::HashSet<String> = live.iter().map(ClusterSettings::place).collect();
        self.cache.lock().unwrap().retain(|id, _| live.contains(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Properties;

    fn docker_profile(host: &str) -> ClusterSettings {
        ClusterSettings::parse(&Properties::from_pairs(&[("docker_host", host)]), false).unwrap()
    }

    #[test]
    fn failures_are_told_apart_by_what_the_runtimes_say() {
        let not_ready = |why: &str| RuntimeError::DaemonNotReady {
            pod: "p".into(),
            why: why.into(),
            seconds: 1.0,
            log_tail: String::new(),
        };
        let cases = [
            (RuntimeError::Unreachable("refused".into()), FailureReason::Unreachable),
            (RuntimeError::Rejected("cannot pull image a:1: not found".into()), FailureReason::ImagePull),
            (RuntimeError::Rejected("pulling image a:1 took over 600 s".into()), FailureReason::ImagePull),
            (RuntimeError::Rejected("creating the agent pod: forbidden (403)".into()), FailureReason::Rejected),
            (not_ready("agent: ErrImagePull: pull access denied"), FailureReason::ImagePull),
            (not_ready("dind: ImagePullBackOff: back-off"), FailureReason::ImagePull),
            (not_ready("not scheduled within 60 s: 0/1 nodes are available"), FailureReason::Unschedulable),
            (not_ready("dind exited with code 1 (Error) before dockerd answered"), FailureReason::DindNotReady),
            (not_ready("no answer within the startup budget of 60 s"), FailureReason::DindNotReady),
            (RuntimeError::Other("packing files".into()), FailureReason::Other),
        ];
        for (error, reason) in cases {
            assert_eq!(error.reason(), reason, "{error}");
        }
    }

    #[test]
    fn the_cache_keeps_only_places_a_profile_still_points_at() {
        let runtimes = Runtimes::new();
        let (a, b) = (docker_profile("tcp://a:2376"), docker_profile("tcp://b:2376"));
        let first = runtimes.runtime(&a).unwrap();
        runtimes.runtime(&b).unwrap();
        assert!(Arc::ptr_eq(&first, &runtimes.runtime(&a).unwrap()), "one runtime per place");
        assert_eq!(runtimes.cache.lock().unwrap().len(), 2);
        runtimes.retain(std::slice::from_ref(&a));
        assert_eq!(runtimes.cache.lock().unwrap().len(), 1, "the deleted profile's client is gone");
        assert!(Arc::ptr_eq(&first, &runtimes.runtime(&a).unwrap()), "the live one is kept");
        runtimes.retain(&[]);
        assert!(runtimes.cache.lock().unwrap().is_empty());
    }
}
