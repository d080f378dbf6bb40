//! An in-process runtime for tests: pods are map entries, with switches to hold creation
//! or make it fail the way a real daemon can.

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{ContainerDetails, PodDetails, PodEvent, PodInfo, PodPhase, Runtime, RuntimeError, RuntimeProvider};
use crate::clock::Clock;
use crate::pod::{label_keys, AgentPod, Ownership};
use crate::settings::ClusterSettings;

#[derive(Debug, Clone)]
pub struct StoredPod {
    pub pod: AgentPod,
    pub info: PodInfo,
}

#[derive(Default)]
struct Faults {
    fail_create: Option<String>,
    panic_create: bool,
    unreachable: bool,
}

/// What `pod_details` and `pod_events` tell of every pod, as a test set it.
struct Told {
    dind_log: String,
    events: Vec<PodEvent>,
}

impl Default for Told {
    fn default() -> Self {
        Self { dind_log: "API listen on 127.0.0.1:2376".into(), events: Vec::new() }
    }
}

pub struct MemoryRuntime {
    clock: Clock,
    pods: Mutex<BTreeMap<String, StoredPod>>,
    faults: Mutex<Faults>,
    told: Mutex<Told>,
    created_total: Mutex<usize>,
    /// Creations wait while this is `false`: a test holds them to act while a pod is
    /// being created, then releases them.
    creates_open: tokio::sync::watch::Sender<bool>,
    /// `describe` (the readiness probe) waits while this is `false`: an engine that
    /// accepts the connection and never answers.
    answering: tokio::sync::watch::Sender<bool>,
    /// What `identity` answers: one per runtime, as an engine's ID.
    identity: String,
}

impl MemoryRuntime {
    pub fn new(clock: Clock) -> Arc<Self> {
        Arc::new(Self {
            clock,
            pods: Mutex::default(),
            faults: Mutex::default(),
            told: Mutex::default(),
            created_total: Mutex::default(),
            creates_open: tokio::sync::watch::Sender::new(true),
            answering: tokio::sync::watch::Sender::new(true),
            identity: format!("memory-{}", uuid::Uuid::new_v4().simple()),
        })
    }

    pub fn pods(&self) -> Vec<StoredPod> {
        self.pods.lock().unwrap().values().cloned().collect()
    }

    pub fn created_total(&self) -> usize {
        *self.created_total.lock().unwrap()
    }

    pub fn set_phase(&self, name: &str, phase: PodPhase) {
        if let Some(p) = self.pods.lock().unwrap().get_mut(name) {
            p.info.phase = phase;
        }
    }

    /// Creations started from now on stay in `Starting` until [`Self::release_creates`].
    pub fn hold_creates(&self) {
        self.creates_open.send_replace(false);
    }

    pub fn release_creates(&self) {
        self.creates_open.send_replace(true);
    }

    pub fn fail_creates_with(&self, reason: Option<&str>) {
        self.faults.lock().unwrap().fail_create = reason.map(str::to_owned);
    }

    /// Creations panic before they create anything, as a bug in a runtime would: the
    /// task that runs them ends without reaching its own bookkeeping.
    pub fn panic_in_creates(&self, panic: bool) {
        self.faults.lock().unwrap().panic_create = panic;
    }

    /// dind's log as `pod_details` tells it (and as a failed creation carries it).
    pub fn set_dind_log(&self, log: &str) {
        log.clone_into(&mut self.told.lock().unwrap().dind_log);
    }

    /// The events `pod_details` and `pod_events` tell of every pod.
    pub fn set_events(&self, events: Vec<PodEvent>) {
        self.told.lock().unwrap().events = events;
    }

    /// `describe` hangs until answering again.
    pub fn set_answering(&self, answering: bool) {
        self.answering.send_replace(answering);
    }

    pub fn set_unreachable(&self, unreachable: bool) {
        self.faults.lock().unwrap().unreachable = unreachable;
    }

    fn check_reachable(&self) -> Result<(), RuntimeError> {
        if self.faults.lock().unwrap().unreachable {
            return Err(RuntimeError::Unreachable("memory runtime switched off by the test".into()));
        }
        Ok(())
    }

    fn owned(pod: &StoredPod, owner: &Ownership) -> bool {
        let labels = pod.pod.pod.metadata.labels.clone().unwrap_or_default();
        owner.selector().iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

#[async_trait]
impl Runtime for MemoryRuntime {
    async fn describe(&self) -> Result<String, RuntimeError> {
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = self.answering.subscribe().wait_for(|answering| *answering).await;
        self.check_reachable()?;
        Ok("in-memory test runtime".into())
    }

    async fn identity(&self) -> Result<String, RuntimeError> {
        self.check_reachable()?;
        Ok(self.identity.clone())
    }

    async fn list_pods(&self, owner: &Ownership) -> Result<Vec<PodInfo>, RuntimeError> {
        self.check_reachable()?;
        Ok(self.pods.lock().unwrap().values().filter(|p| Self::owned(p, owner)).map(|p| p.info.clone()).collect())
    }

    async fn create_pod(&self, pod: &AgentPod, start: &super::StartOptions) -> Result<(), RuntimeError> {
        self.check_reachable()?;
        assert!(!self.faults.lock().unwrap().panic_create, "memory runtime: a test made pod creation panic");
        let name = pod.pod.metadata.name.clone().unwrap_or_default();
        let labels = pod.pod.metadata.labels.clone().unwrap_or_default();
        let info = PodInfo {
            name: name.clone(),
            job_id: labels.get(label_keys::JOB_ID).and_then(|j| j.parse().ok()).unwrap_or_default(),
            job: None,
            created: self.clock.now(),
            phase: PodPhase::Starting,
            warm: None,
        };
        self.pods.lock().unwrap().insert(name.clone(), StoredPod { pod: pod.clone(), info });
        *self.created_total.lock().unwrap() += 1;
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = self.creates_open.subscribe().wait_for(|open| *open).await;
        let failure = self.faults.lock().unwrap().fail_create.clone();
        if let Some(reason) = failure {
            self.pods.lock().unwrap().remove(&name);
            return Err(RuntimeError::DaemonNotReady {
                pod: name,
                why: "a test fault".into(),
                seconds: 0.0,
                log_tail: reason,
            });
        }
        (start.dockerd_ready)();
        self.set_phase(&name, PodPhase::Running);
        Ok(())
    }

    async fn delete_pod(&self, owner: &Ownership, name: &str) -> Result<(), RuntimeError> {
        self.check_reachable()?;
        let mut pods = self.pods.lock().unwrap();
        if pods.get(name).is_some_and(|p| Self::owned(p, owner)) {
            pods.remove(name);
        }
        Ok(())
    }

    async fn pod_details(&self, owner: &Ownership, name: &str) -> Result<Option<PodDetails>, RuntimeError> {
        self.check_reachable()?;
        let pods = self.pods.lock().unwrap();
        let told = self.told.lock().unwrap();
        Ok(pods.get(name).filter(|p| Self::owned(p, owner)).map(|p| {
            let spec = p.pod.pod.spec.clone().unwrap_or_default();
            let containers = spec
                .init_containers
                .iter()
                .flatten()
                .chain(&spec.containers)
                .map(|c| ContainerDetails {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    state: match &p.info.phase {
                        PodPhase::Starting => "starting".into(),
                        PodPhase::Running => "running".into(),
                        PodPhase::Stopped(why) => format!("stopped: {why}"),
                    },
                    exit_code: matches!(p.info.phase, PodPhase::Stopped(_)).then_some(1),
                    ..ContainerDetails::default()
                })
                .collect();
            PodDetails {
                containers,
                notes: Vec::new(),
                dind_log_tail: told.dind_log.clone(),
                events: told.events.clone(),
            }
        }))
    }

    async fn pod_events(&self, _name: &str) -> Result<Vec<PodEvent>, RuntimeError> {
        self.check_reachable()?;
        Ok(self.told.lock().unwrap().events.clone())
    }
}

/// Hands every cluster profile the default in-memory runtime, except profiles whose
/// `docker_host` names an engine of their own (tests of several engines).
pub struct MemoryProvider {
    default: Arc<MemoryRuntime>,
    engines: BTreeMap<String, Arc<MemoryRuntime>>,
}

impl MemoryProvider {
    pub fn new(default: Arc<MemoryRuntime>) -> Self {
        Self { default, engines: BTreeMap::new() }
    }

    /// Profiles with this `docker_host` get `runtime`.
    #[must_use]
    pub fn with_engine(mut self, docker_host: &str, runtime: Arc<MemoryRuntime>) -> Self {
        self.engines.insert(docker_host.to_owned(), runtime);
        self
    }
}

impl RuntimeProvider for MemoryProvider {
    fn runtime(&self, cluster: &ClusterSettings) -> Result<Arc<dyn Runtime>, RuntimeError> {
        let engine = cluster.docker.host.as_ref().and_then(|host| self.engines.get(host));
        Ok(engine.unwrap_or(&self.default).clone())
    }
}
