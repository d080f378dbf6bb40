//! An in-process runtime for tests: pods are map entries, with switches to hold creation
//! or make it fail the way a real daemon can.

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{ContainerDetails, PodDetails, PodEvent, PodInfo, PodPhase, Runtime, RuntimeError, RuntimeProvider};
use crate::clock::Clock;
use crate::listing::{WarmPod, WarmState};
use crate::pod::{label_keys, pool_of, secret_key, AgentPod, Ownership};
use crate::settings::ClusterSettings;

#[derive(Debug, Clone)]
pub struct StoredPod {
    pub pod: AgentPod,
    pub info: PodInfo,
}

#[derive(Default)]
struct Faults {
    fail_create: Option<String>,
    fail_claim: Option<String>,
    fail_delete: Option<String>,
    panic_create: bool,
    unreachable: bool,
    /// Images whose `docker pull` in a pod's dind fails.
    failing_pulls: std::collections::BTreeSet<String>,
}

/// A warm pod claimed for a job, in the order of the claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub pod: String,
    pub job_id: i64,
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
    /// The most pods that existed at once.
    peak: Mutex<usize>,
    claims: Mutex<Vec<Claim>>,
    /// Commands run in dind (pre-pulls), each with its pod.
    dind_commands: Mutex<Vec<(String, Vec<String>)>>,
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
            peak: Mutex::default(),
            claims: Mutex::default(),
            dind_commands: Mutex::default(),
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

    /// The most pods that existed at once so far: limits are checked against it.
    pub fn peak(&self) -> usize {
        *self.peak.lock().unwrap()
    }

    fn insert(&self, name: String, stored: StoredPod) {
        let mut pods = self.pods.lock().unwrap();
        pods.insert(name, stored);
        let mut peak = self.peak.lock().unwrap();
        *peak = (*peak).max(pods.len());
    }

    /// Every claim of a warm pod so far.
    pub fn claims(&self) -> Vec<Claim> {
        self.claims.lock().unwrap().clone()
    }

    /// Commands run in dind so far, with their pods.
    pub fn dind_commands(&self) -> Vec<(String, Vec<String>)> {
        self.dind_commands.lock().unwrap().clone()
    }

    /// Claims fail until called with `None`: after the pod was checked and bound to the
    /// job, as a Kubernetes claim whose exec into the agent fails after the bind patch.
    pub fn fail_claims_with(&self, reason: Option<&str>) {
        self.faults.lock().unwrap().fail_claim = reason.map(str::to_owned);
    }

    /// Removing a pod fails, leaving it as it is, until called with `None`.
    pub fn fail_deletes_with(&self, reason: Option<&str>) {
        self.faults.lock().unwrap().fail_delete = reason.map(str::to_owned);
    }

    /// Binds warm pod `name` to `job_id` as another service sharing the cluster would
    /// claim it: a claim of this service that has not bound it yet loses the race.
    pub fn claim_elsewhere(&self, name: &str, job_id: i64) {
        let mut pods = self.pods.lock().unwrap();
        let stored = pods.get_mut(name).filter(|p| p.info.warm.is_some()).expect("an unclaimed warm pod");
        stored
            .pod
            .pod
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(label_keys::JOB_ID.into(), job_id.to_string());
        stored.info = PodInfo { job_id, warm: None, created: self.clock.now(), ..stored.info.clone() };
    }

    /// `docker pull IMAGE` fails in every pod's dind.
    pub fn fail_pulls_of(&self, image: &str) {
        self.faults.lock().unwrap().failing_pulls.insert(image.to_owned());
    }

    pub fn set_phase(&self, name: &str, phase: PodPhase) {
        if let Some(p) = self.pods.lock().unwrap().get_mut(name) {
            p.info.phase = phase;
        }
    }

    /// A creation, as both kinds of pod make it: stored and counted, held while
    /// [`Self::hold_creates`] says so, then failed (and removed, as a runtime removes
    /// what it made of a failed start) when a test set `fail_create`.
    async fn store_and_start(&self, pod: &AgentPod, info: PodInfo) -> Result<(), RuntimeError> {
        let name = info.name.clone();
        self.insert(name.clone(), StoredPod { pod: pod.clone(), info });
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
        Ok(())
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

    /// A claim of pod `name` may go on: it is an unclaimed warm pod of `owner`. One bound
    /// to a job already lost a race; one that is gone or not ours cannot be claimed.
    fn check_claimable(pods: &BTreeMap<String, StoredPod>, owner: &Ownership, name: &str) -> Result<(), RuntimeError> {
        match pods.get(name).filter(|p| Self::owned(p, owner)) {
            None => Err(RuntimeError::Rejected(format!("{name} is gone"))),
            Some(p) if p.info.warm.is_none() => {
                Err(RuntimeError::AlreadyClaimed(format!("{name} was claimed meanwhile")))
            }
            Some(_) => Ok(()),
        }
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
        self.store_and_start(pod, info).await?;
        (start.dockerd_ready)();
        self.set_phase(&name, PodPhase::Running);
        Ok(())
    }

    fn supports_warm_pods(&self) -> bool {
        true
    }

    async fn create_warm_pod(&self, pod: &AgentPod, start: &super::StartOptions) -> Result<(), RuntimeError> {
        self.check_reachable()?;
        let labels = pod.pod.metadata.labels.clone().unwrap_or_default();
        let Some((pool, shape)) = pool_of(|key| labels.get(key).cloned()) else {
            return Err(RuntimeError::Rejected("a warm pod's labels name no pool".into()));
        };
        assert!(!labels.contains_key(label_keys::JOB_ID), "a warm pod carries no job");
        let state = WarmState::Warming;
        let warm = Some(WarmPod { pool, shape, state });
        let name = pod.pod.metadata.name.clone().unwrap_or_default();
        let info = PodInfo {
            name: name.clone(),
            job_id: 0,
            job: None,
            created: self.clock.now(),
            phase: PodPhase::Starting,
            warm,
        };
        self.store_and_start(pod, info).await?;
        (start.dockerd_ready)();
        if let Some(p) = self.pods.lock().unwrap().get_mut(&name) {
            p.info.phase = PodPhase::Running;
            if let Some(warm) = &mut p.info.warm {
                warm.state = WarmState::Ready;
            }
        }
        Ok(())
    }

    async fn claim_pod(&self, owner: &Ownership, claim: &AgentPod) -> Result<(), RuntimeError> {
        self.check_reachable()?;
        let name = claim.pod.metadata.name.clone().unwrap_or_default();
        let labels = claim.pod.metadata.labels.clone().unwrap_or_default();
        let job_id: i64 = labels.get(label_keys::JOB_ID).and_then(|j| j.parse().ok()).unwrap_or_default();
        Self::check_claimable(&self.pods.lock().unwrap(), owner, &name)?;
        let _ = self.creates_open.subscribe().wait_for(|open| *open).await;
        let mut pods = self.pods.lock().unwrap();
        Self::check_claimable(&pods, owner, &name)?;
        let stored = pods.get_mut(&name).expect("checked");
        stored.pod.pod.metadata.labels = Some(labels);
        stored.pod.pod.metadata.annotations.clone_from(&claim.pod.metadata.annotations);
        stored.info = PodInfo { job_id, warm: None, created: self.clock.now(), ..stored.info.clone() };
        if let Some(reason) = self.faults.lock().unwrap().fail_claim.clone() {
            return Err(RuntimeError::Other(reason));
        }
        stored.pod.pod.spec.clone_from(&claim.pod.spec);
        let key = claim.secret.data.iter().flatten().filter(|(k, _)| k.as_str() == secret_key::AUTO_REGISTER_KEY);
        stored.pod.secret.data.get_or_insert_with(BTreeMap::new).extend(key.map(|(k, v)| (k.clone(), v.clone())));
        drop(pods);
        self.claims.lock().unwrap().push(Claim { pod: name, job_id });
        Ok(())
    }

    async fn exec_in_dind(
        &self,
        owner: &Ownership,
        pod: &str,
        command: &[String],
    ) -> Result<(i64, String), RuntimeError> {
        self.check_reachable()?;
        if !self.pods.lock().unwrap().get(pod).is_some_and(|p| Self::owned(p, owner)) {
            return Err(RuntimeError::Other(format!("no pod {pod}")));
        }
        self.dind_commands.lock().unwrap().push((pod.to_owned(), command.to_vec()));
        let image = command.last().cloned().unwrap_or_default();
        if self.faults.lock().unwrap().failing_pulls.contains(&image) {
            return Ok((1, format!("Error response from daemon: manifest for {image} not found: manifest unknown")));
        }
        Ok((0, format!("Status: Downloaded newer image for {image}")))
    }

    async fn delete_pod(&self, owner: &Ownership, name: &str) -> Result<(), RuntimeError> {
        self.check_reachable()?;
        if let Some(reason) = self.faults.lock().unwrap().fail_delete.clone() {
            return Err(RuntimeError::Other(reason));
        }
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
