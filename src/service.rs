//! The service's state and the effects of the GoCD rules: it gathers snapshots (runtime
//! listings, GoCD's agents), asks the pure rules in `agents` what to do, and does it.

mod console;
pub mod journal;
mod lifecycle;
mod observe;
mod pools;
pub mod postmortem;
mod profiles;
mod registry;
mod reports;

pub use pools::KnownPool;
pub use profiles::{OrphanView, TrackedClusters, READY_PROBE_TIMEOUT};
pub use registry::{Failure, Lifecycle, PodRecord, Registry};
pub use reports::{AgentView, ClusterView, PluginView, PodRow, PodState, PoolView, ProfileView, StateCounts, WarmRow};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::pod::Ownership;
use crate::processor::{HealthMessage, ProcessorClient, ServerInfo};
use crate::protocol::{AgentMetadata, JobIdentifier, Properties, ValidationError};
use crate::runtime::{Runtime, RuntimeError, RuntimeProvider};
use crate::settings::{cluster, Choice, ClusterId, ClusterSettings, RuntimeKind};

#[derive(Debug, Clone, Copy, Default)]
pub struct ServiceOptions {
    /// Accept `runtime = memory` in cluster profiles (tests only). Always false in a
    /// build without the `test-doubles` feature, which cannot parse `memory` anyway.
    pub allow_memory_runtime: bool,
}

/// One cluster profile, resolved: its settings, where its pods live and whose they are.
#[derive(Clone)]
pub struct Cluster {
    pub settings: ClusterSettings,
    pub id: ClusterId,
    pub runtime: Arc<dyn Runtime>,
    pub owner: Ownership,
}

impl Cluster {
    /// The profile's `max_pending_agents` and `max_running_agents`, as the rules take them.
    pub fn limits(&self) -> crate::agents::Limits {
        crate::agents::Limits {
            max_pending: self.settings.max_pending_agents,
            max_total: self.settings.max_running_agents,
        }
    }

    /// How operators recognise the profile: GoCD never tells us its id.
    pub fn describe(&self) -> String {
        let s = &self.settings;
        match s.runtime {
            RuntimeKind::Docker => format!("docker at {}", s.docker.host.as_deref().unwrap_or("the local engine")),
            RuntimeKind::Kubernetes => {
                format!("kubernetes namespace {}", s.kubernetes.namespace.as_deref().unwrap_or("(service account's)"))
            }
            #[cfg(feature = "test-doubles")]
            RuntimeKind::Memory => match &s.docker.host {
                Some(host) => format!("in-memory test runtime at {host}"),
                None => "in-memory test runtime".to_owned(),
            },
        }
    }
}

/// Why a cluster profile cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// The profile's properties do not parse; the message lists every problem.
    #[error("{0}")]
    Invalid(String),
    /// GoCD (through the bridge), or an engine never identified yet, did not answer:
    /// try again later.
    #[error("{0}")]
    Transient(String),
}

/// Console lines waiting to be sent, and whether a task is sending them.
#[derive(Default)]
struct ConsoleQueue {
    lines: std::collections::VecDeque<(JobIdentifier, String)>,
    writing: bool,
}

pub struct Service {
    pub(crate) runtimes: Arc<dyn RuntimeProvider>,
    pub(crate) processor: ProcessorClient,
    pub(crate) clock: Clock,
    pub(crate) options: ServiceOptions,
    pub(crate) registry: Mutex<Registry>,
    create_locks: Mutex<HashMap<ClusterId, Arc<tokio::sync::Mutex<()>>>>,
    ping_lock: tokio::sync::Mutex<()>,
    server_info: tokio::sync::Mutex<Option<ServerInfo>>,
    health: Mutex<BTreeMap<ClusterId, HealthMessage>>,
    clusters: Mutex<HashMap<ClusterId, Cluster>>,
    last_agents: Mutex<Vec<AgentMetadata>>,
    last_refresh: Mutex<HashMap<ClusterId, std::time::Instant>>,
    /// The cluster each place (`ClusterSettings::place`, an address as spelled) was found
    /// to be, asked of its engine once: an engine that is down later stays identified.
    identities: Mutex<HashMap<String, ClusterId>>,
    /// Clusters no profile names any more that may still hold pods of this server.
    orphans: Mutex<BTreeMap<ClusterId, profiles::Orphan>>,
    /// Whether any cluster profile GoCD reported runs on Kubernetes: elastic profiles are
    /// then validated only against what every runtime honours.
    kubernetes_in_use: std::sync::atomic::AtomicBool,
    pub(crate) tasks: TaskTracker,
    console_lines: Arc<Mutex<ConsoleQueue>>,
    /// One `settle` at a time: it closes and reopens the task tracker.
    settling: tokio::sync::Mutex<()>,
    pub metrics: Metrics,
    /// The warm pools jobs asked for, by cluster and pool (see `pools`).
    pools: Mutex<BTreeMap<(ClusterId, crate::settings::PoolId), pools::KnownPool>>,
    /// Timelines, holds, engine health and post-mortems (see `journal`).
    pub(crate) journal: Mutex<journal::Journal>,
    postmortem_log: std::sync::OnceLock<postmortem::PostmortemLog>,
}

impl Service {
    pub fn new(
        runtimes: Arc<dyn RuntimeProvider>,
        processor: ProcessorClient,
        clock: Clock,
        options: ServiceOptions,
    ) -> Arc<Self> {
        Arc::new(Self {
            runtimes,
            processor,
            clock,
            options,
            registry: Mutex::default(),
            create_locks: Mutex::default(),
            ping_lock: tokio::sync::Mutex::default(),
            server_info: tokio::sync::Mutex::default(),
            health: Mutex::default(),
            clusters: Mutex::default(),
            last_agents: Mutex::default(),
            last_refresh: Mutex::default(),
            identities: Mutex::default(),
            orphans: Mutex::default(),
            kubernetes_in_use: std::sync::atomic::AtomicBool::new(false),
            tasks: TaskTracker::new(),
            console_lines: Arc::default(),
            settling: tokio::sync::Mutex::default(),
            metrics: Metrics::default(),
            pools: Mutex::default(),
            journal: Mutex::default(),
            postmortem_log: std::sync::OnceLock::new(),
        })
    }

    /// Waits (bounded) for pods being created or torn down in the background.
    pub async fn drain(&self, within: Duration) {
        let drained = async {
            {
                // No `settle` reopens the tracker after this close.
                let _no_settle_in_between = self.settling.lock().await;
                self.tasks.close();
            }
            self.tasks.wait().await;
        };
        if tokio::time::timeout(within, drained).await.is_err() {
            tracing::warn!(
                in_flight = self.tasks.len(),
                "shutting down with pod operations still running; server-ping cleans up after the restart"
            );
        }
    }

    /// Waits until the background work started so far has run: pod starts, console
    /// lines, server-health messages, refreshes, and whatever those start in turn. Tests
    /// and the demo wait on this instead of on the clock. Each of these tasks ends on its
    /// own (engine and bridge calls have timeouts, a pod start has its budget).
    pub async fn settle(&self) {
        let _one_at_a_time = self.settling.lock().await;
        if self.tasks.is_closed() {
            // Draining: the tracker stays closed.
            self.tasks.wait().await;
            return;
        }
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
    }

    /// GoCD's server id and URLs, asked once and then remembered.
    pub async fn server_info(&self) -> Result<ServerInfo, crate::processor::ProcessorError> {
        let mut cached = self.server_info.lock().await;
        if let Some(info) = cached.as_ref() {
            return Ok(info.clone());
        }
        let info = self.processor.server_info().await?;
        *cached = Some(info.clone());
        Ok(info)
    }

    /// Which cluster a profile's settings name (the key of everything kept per cluster,
    /// and the cluster label of its pods): the engine's own identity, asked once per
    /// spelling of its place and then remembered. An engine never identified and not
    /// answering names no cluster yet: a transient error, so nothing is decided on it.
    async fn cluster_id(&self, settings: &ClusterSettings, runtime: &dyn Runtime) -> Result<ClusterId, ClusterError> {
        let place = settings.place();
        if let Some(id) = self.identities.lock().unwrap().get(&place) {
            return Ok(id.clone());
        }
        let identity = runtime.identity().await.map_err(|e| {
            ClusterError::Transient(format!("cannot tell which engine the cluster profile points at: {e}"))
        })?;
        let id = ClusterId::of_identity(settings.runtime, &identity);
        self.identities.lock().unwrap().insert(place, id.clone());
        Ok(id)
    }

    /// Resolves a cluster profile. Needs the server id (ownership labels), so it fails
    /// while the processor bridge is unreachable.
    async fn cluster(&self, settings: ClusterSettings) -> Result<Cluster, ClusterError> {
        let runtime = self.runtimes.runtime(&settings).map_err(|e| ClusterError::Invalid(e.to_string()))?;
        let info = self
            .server_info()
            .await
            .map_err(|e| ClusterError::Transient(format!("cannot learn GoCD's server id: {e}")))?;
        let id = self.cluster_id(&settings, runtime.as_ref()).await?;
        let cluster = Cluster { owner: Ownership::new(&info.server_id, id.clone()), id: id.clone(), runtime, settings };
        self.clusters.lock().unwrap().insert(id.clone(), cluster.clone());
        // A profile names it again: its pods are managed again.
        self.orphans.lock().unwrap().remove(&id);
        Ok(cluster)
    }

    /// Lists the cluster's pods into the registry; returns what the registry now holds
    /// for it (pods still being created included).
    pub(crate) async fn refresh(&self, cluster: &Cluster) -> Result<Vec<crate::listing::PodInfo>, RuntimeError> {
        let listed = match cluster.runtime.list_pods(&cluster.owner).await {
            Ok(listed) => listed,
            Err(e) => {
                self.note_engine(&cluster.id, Some(e.to_string()));
                return Err(e);
            }
        };
        self.note_engine(&cluster.id, None);
        let (dropped, pods) = {
            let mut registry = self.registry.lock().unwrap();
            let dropped = registry.refresh(&cluster.id, listed.clone());
            (dropped, registry.cluster_pods(&cluster.id))
        };
        self.note_listing(cluster, &listed, &dropped);
        Ok(pods)
    }

    /// Parses and resolves a cluster profile as GoCD sent it.
    pub async fn resolve(&self, props: &Properties) -> Result<Cluster, ClusterError> {
        let settings = ClusterSettings::parse(props, self.options.allow_memory_runtime).map_err(|errors| {
            ClusterError::Invalid(format!("the cluster profile is invalid: {}", ValidationError::join(&errors)))
        })?;
        self.cluster(settings).await
    }

    /// Records which runtimes GoCD's cluster profiles use. migrate-config and server-ping
    /// carry every profile (`complete`); cluster-profile-changed only one.
    pub fn note_cluster_profiles(&self, profiles: &[Properties], complete: bool) {
        let kubernetes = profiles.iter().any(|p| cluster::RUNTIME.get(p) == Some(RuntimeKind::Kubernetes.name()));
        let flag = &self.kubernetes_in_use;
        if complete {
            flag.store(kubernetes, std::sync::atomic::Ordering::Relaxed);
        } else if kubernetes {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub fn kubernetes_in_use(&self) -> bool {
        self.kubernetes_in_use.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The pod the service knows for a job, if any.
    pub fn pod_of_job(&self, job_id: i64) -> Option<PodRecord> {
        self.registry.lock().unwrap().find_by_job(job_id).cloned()
    }

    /// Why the last pod for a job could not be started.
    pub fn last_failure(&self, job_id: i64) -> Option<Failure> {
        let journal = self.journal.lock().unwrap();
        let story = journal.postmortem_of_job(job_id)?;
        let failure = story.failure.as_ref()?;
        let at = story.at(journal::Stage::Removed)?;
        Some(Failure { job_id, pod: story.pod.clone(), at, reason: failure.message.clone() })
    }

    pub(crate) fn known_cluster(&self, id: &ClusterId) -> Option<Cluster> {
        self.clusters.lock().unwrap().get(id).cloned()
    }

    pub(crate) fn known_clusters(&self) -> Vec<Cluster> {
        self.clusters.lock().unwrap().values().cloned().collect()
    }

    fn create_lock(&self, id: &ClusterId) -> Arc<tokio::sync::Mutex<()>> {
        self.create_locks.lock().unwrap().entry(id.clone()).or_default().clone()
    }

    /// Agent ids GoCD knows; the last good answer when the bridge fails.
    async fn registered_agents(&self) -> BTreeSet<String> {
        match self.processor.list_agents().await {
            Ok(agents) => {
                let ids = agents.iter().map(|a| a.agent_id.clone()).collect();
                self.note_agents(&agents);
                *self.last_agents.lock().unwrap() = agents;
                ids
            }
            Err(e) => {
                tracing::warn!(error = %e, "list-agents failed; using the last answer");
                self.last_agents.lock().unwrap().iter().map(|a| a.agent_id.clone()).collect()
            }
        }
    }

    /// Writes a line into the job's console without holding up the request. Lines go out
    /// one at a time, in the order they were written, so a console reads as the story it
    /// tells (one writer task at a time drains the queue; `settle` waits for it).
    pub(crate) fn console(&self, job: &JobIdentifier, text: String) {
        let mut queue = self.console_lines.lock().unwrap();
        queue.lines.push_back((job.clone(), text));
        if std::mem::replace(&mut queue.writing, true) {
            return;
        }
        drop(queue);
        let (processor, queue) = (self.processor.clone(), self.console_lines.clone());
        self.tasks.spawn(async move {
            loop {
                let next = {
                    let mut queue = queue.lock().unwrap();
                    let next = queue.lines.pop_front();
                    queue.writing = next.is_some();
                    next
                };
                let Some((job, text)) = next else { return };
                if let Err(e) = processor.append_console(&job, &text).await {
                    tracing::warn!(error = %e, job = %job.path(), "could not write to the job console");
                }
            }
        });
    }

    /// Sets or clears this cluster's server-health message, then sends the whole list
    /// (GoCD replaces all of a plugin's messages with each call).
    pub(crate) fn set_health(&self, cluster: &ClusterId, message: Option<HealthMessage>) {
        let messages: Vec<HealthMessage> = {
            let mut health = self.health.lock().unwrap();
            let changed = match message {
                Some(m) => health.insert(cluster.clone(), m.clone()).as_ref() != Some(&m),
                None => health.remove(cluster).is_some(),
            };
            if !changed {
                return;
            }
            health.values().cloned().collect()
        };
        self.send_health(messages);
    }

    /// Sends GoCD the plugin's whole list of server-health messages, in the background.
    fn send_health(&self, messages: Vec<HealthMessage>) {
        let processor = self.processor.clone();
        self.tasks.spawn(async move {
            if let Err(e) = processor.set_health_messages(&messages).await {
                tracing::warn!(error = %e, "could not update GoCD's server-health messages; retried at the next change");
            }
        });
    }

    pub(crate) fn has_health(&self, cluster: &ClusterId) -> bool {
        self.health.lock().unwrap().contains_key(cluster)
    }
}

#[cfg(test)]
mod tests;
