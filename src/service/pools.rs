//! Warm pools, the effects: making warm pods (and pre-pulling their images), claiming one
//! for a job, removing one to make room. The decisions are `agents::pool`'s; create-agent
//! takes them under the cluster's create lock and registers each pod before its work
//! starts in the background, so concurrent requests see it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

use super::console;
use super::journal::Stage;
use super::lifecycle::CreatingRecord;
use super::{Cluster, Service};
use crate::agents::{self, Limits};
use crate::error::Result;
use crate::listing::{PoolShape, WarmState};
use crate::pod::{self, AgentPod, Binding};
use crate::protocol::{CreateAgentRequest, JobIdentifier};
use crate::runtime::{RuntimeError, StartOptions};
use crate::settings::{ClusterId, ElasticSettings, PoolId};

/// How long one image may take to pre-pull before the warm pod gives up on it.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
/// How much of a failed pull's output is kept to tell the job (its last line is the
/// daemon's error).
const PULL_OUTPUT_KEPT: usize = 300;

/// A pool as a job of its profile last asked for it: what server-ping drains by and the
/// status page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownPool {
    pub shape: PoolShape,
    /// The agent image and the images it pre-pulls, to recognise the profile by.
    pub image: String,
    pub pre_pull: Vec<String>,
    pub asked: SystemTime,
}

/// What create-agent knows of a job, for the work it starts in the background.
#[derive(Clone)]
pub(crate) struct JobOrder {
    pub req: CreateAgentRequest,
    pub elastic: ElasticSettings,
    pub go_server_url: String,
    /// When create-agent decided: a claim is timed from here.
    pub decided: Instant,
}

impl JobOrder {
    fn job(&self) -> &JobIdentifier {
        &self.req.job_identifier
    }

    /// What binds a pod to the order's job: its labels, register key and environment.
    pub(crate) fn binding(&self) -> Binding<'_> {
        Binding::Job {
            job: &self.req.job_identifier,
            environment: self.req.environment.as_deref(),
            auto_register_key: &self.req.auto_register_key,
        }
    }
}

impl Service {
    /// The pool the job's profiles name on this cluster when its runtime keeps warm pods
    /// (also with `WarmPoolSize = 0`: a job still claims what the pool holds, say after a
    /// resize to 0, until those pods idle out). The shape a profile with a pool asks for
    /// now is remembered for server-ping; one without (`0`) says nothing about the pool,
    /// so two profiles that build the same pods, one with a pool and one without, never
    /// drain each other's.
    pub(crate) fn pool_of(&self, cluster: &Cluster, order: &JobOrder) -> Option<PoolId> {
        if !cluster.runtime.supports_warm_pods() {
            return None;
        }
        let req = &order.req;
        let pool =
            PoolId::of(&req.cluster_profile_properties, &req.elastic_agent_profile_properties, &order.go_server_url);
        if order.elastic.warm_pool_size == 0 {
            return Some(pool);
        }
        let known = KnownPool {
            shape: PoolShape { size: order.elastic.warm_pool_size, idle: order.elastic.warm_pool_idle },
            image: order.elastic.image.clone().or_else(|| cluster.settings.agent_image.clone()).unwrap_or_default(),
            pre_pull: order.elastic.pre_pull_images.clone(),
            asked: self.clock.now(),
        };
        self.pools.lock().unwrap().insert((cluster.id.clone(), pool.clone()), known);
        Some(pool)
    }

    /// The shapes of the pools of `cluster` that jobs asked for since this process started.
    pub(crate) fn pool_shapes(&self, cluster: &ClusterId) -> BTreeMap<PoolId, PoolShape> {
        let pools = self.pools.lock().unwrap();
        pools.iter().filter(|((c, _), _)| c == cluster).map(|((_, pool), known)| (pool.clone(), known.shape)).collect()
    }

    /// The pools of `cluster` jobs asked for, for the status page.
    pub fn known_pools(&self, cluster: &ClusterId) -> Vec<(PoolId, KnownPool)> {
        let pools = self.pools.lock().unwrap();
        pools
            .iter()
            .filter(|((c, _), _)| c == cluster)
            .map(|((_, pool), known)| (pool.clone(), known.clone()))
            .collect()
    }

    /// Unclaimed warm pods by cluster, pool and state (`warming`, `ready`; those being
    /// removed are left out), for the `gocd_dind_warm_pods` gauge.
    pub(crate) fn warm_counts(&self) -> Vec<(ClusterId, String, &'static str, i64)> {
        let mut counts: BTreeMap<(ClusterId, String, &'static str), i64> = BTreeMap::new();
        let registry = self.registry.lock().unwrap();
        let clusters: BTreeSet<ClusterId> = registry.all().map(|r| r.cluster.clone()).collect();
        for cluster in clusters {
            for pod in registry.cluster_pods(&cluster) {
                let Some(warm) = pod.warm else { continue };
                if warm.state == WarmState::Leaving {
                    continue;
                }
                let state = warm.state.as_str();
                *counts.entry((cluster.clone(), warm.pool.0, state)).or_default() += 1;
            }
        }
        counts.into_iter().map(|((cluster, pool, state), n)| (cluster, pool, state, n)).collect()
    }

    /// Forgets the pools of clusters no profile names.
    pub(crate) fn retain_pools(&self, live: &BTreeSet<ClusterId>) {
        self.pools.lock().unwrap().retain(|(cluster, _), _| live.contains(cluster));
    }

    /// Starts the warm pods `pool` lacks, within the limits; the create lock is held, and
    /// the job's own pod (claimed or being made) is already registered, so it comes first.
    pub(crate) fn fill_pool(
        self: &Arc<Self>,
        cluster: &Cluster,
        order: &JobOrder,
        pool: &PoolId,
        registered: &BTreeSet<String>,
        limits: Limits,
    ) {
        let size = order.elastic.warm_pool_size;
        if size == 0 {
            return;
        }
        let pods = self.registry.lock().unwrap().cluster_pods(&cluster.id);
        let shape = PoolShape { size, idle: order.elastic.warm_pool_idle };
        for _ in 0..agents::pool::plan_fill(&pods, registered, limits, pool, size) {
            let name = pod::new_name();
            let built = match Self::pod_for(cluster, order, &name, Binding::Warm { pool, shape }, true) {
                Ok(built) => built,
                Err(e) => {
                    // The job's own pod was built from the same profile, so this is rare
                    // (a runtime refusing what only a warm pod has); the pool stays short.
                    warn!(error = %e, pool = %pool, "cannot build a warm pod; the pool is not filled");
                    return;
                }
            };
            self.registry.lock().unwrap().insert_warming(
                cluster.id.clone(),
                &name,
                pool.clone(),
                shape,
                self.clock.now(),
            );
            self.note_warm_created(cluster, &name);
            let (service, cluster, images) = (Arc::clone(self), cluster.clone(), order.elastic.pre_pull_images.clone());
            self.tasks.spawn(async move { service.start_warm(cluster, built, images).await });
        }
    }

    /// The pod `order`'s job would get, under the warm pod's name and without TLS
    /// material: what binds the warm pod to the job.
    pub(crate) fn build_claim(cluster: &Cluster, order: &JobOrder, name: &str) -> Result<AgentPod> {
        Self::pod_for(cluster, order, name, order.binding(), false)
    }

    /// Makes a warm pod, then pre-pulls its images into its dockerd; only then may a job
    /// claim it. A pull that fails is remembered for the job that claims the pod.
    async fn start_warm(self: Arc<Self>, cluster: Cluster, pod: AgentPod, images: Vec<String>) {
        let name = pod.pod.metadata.name.clone().unwrap_or_default();
        let _record = CreatingRecord { registry: &self.registry, name: name.clone() };
        let started = Instant::now();
        let progress = {
            let name = name.clone();
            Box::new(move |line: String| info!(pod = %name, "{line}"))
        };
        let dockerd_ready = {
            let (service, name) = (Arc::clone(&self), name.clone());
            Box::new(move || service.note_stage(&name, Stage::DockerdReady))
        };
        let start = StartOptions { budget: cluster.settings.auto_register_timeout, progress, dockerd_ready };
        if let Err(e) = cluster.runtime.create_warm_pod(&pod, &start).await {
            let reason = crate::metrics::Reason { reason: super::lifecycle::failure_kind(&e).into() };
            self.metrics.pod_create_failures.get_or_create(&reason).inc();
            self.registry.lock().unwrap().remove(&name);
            self.note_start_failure(&cluster, &name, &e).await;
            warn!(pod = %name, error = %e, "a warm pod failed to start and was removed");
            return;
        }
        let mut failures = Vec::new();
        for image in &images {
            if let Err(why) = self.pre_pull(&cluster, &name, image).await {
                warn!(pod = %name, image = %image, error = %why, "pre-pulling an image failed");
                failures.push(format!("{image}: {why}"));
            }
        }
        self.registry.lock().unwrap().warm_ready(&name, failures);
        info!(pod = %name, seconds = started.elapsed().as_secs_f64(), images = images.len(), "warm pod ready");
    }

    async fn pre_pull(&self, cluster: &Cluster, pod: &str, image: &str) -> std::result::Result<(), String> {
        let command = pod::pull_command(image);
        let pull = cluster.runtime.exec_in_dind(&cluster.owner, pod, &command);
        match tokio::time::timeout(PULL_TIMEOUT, pull).await {
            Err(_) => Err(format!("no answer within {} s", PULL_TIMEOUT.as_secs())),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok((0, _))) => Ok(()),
            Ok(Ok((code, output))) => {
                let last = output.trim().lines().last().unwrap_or_default();
                let kept: String = last.chars().take(PULL_OUTPUT_KEPT).collect();
                Err(format!("docker pull exited with {code}: {kept}"))
            }
        }
    }

    /// Claims warm pod `name` (already bound to the job in the registry) for the order's
    /// job. Should the claim fail, the warm pod is removed and the job gets a pod made
    /// now, registered before the warm pod's record goes, so a concurrent create-agent
    /// for the job never finds it without a pod. A claim that lost the race for the pod
    /// (another claim bound it first) leaves the pod to the winner, and so does one whose
    /// removal failed (the pod is left leaving for server-ping): then the job is decided
    /// again, since a new pod may not fit the limits.
    pub(crate) async fn claim_warm(
        self: Arc<Self>,
        cluster: Cluster,
        name: String,
        order: JobOrder,
        claim: AgentPod,
        pool: PoolId,
    ) {
        self.claim(&cluster, &name, &order, &claim, &pool).await;
        self.refill(&cluster, &order, &pool).await;
    }

    /// Fills the pool after a claim, under the create lock, against the agents GoCD
    /// listed last (create-agent asked moments ago).
    async fn refill(self: &Arc<Self>, cluster: &Cluster, order: &JobOrder, pool: &PoolId) {
        let lock = self.create_lock(&cluster.id);
        let _one_decision_at_a_time = lock.lock().await;
        let registered: BTreeSet<String> =
            self.last_agents.lock().unwrap().iter().map(|a| a.agent_id.clone()).collect();
        let limits = cluster.limits();
        self.fill_pool(cluster, order, pool, &registered, limits);
    }

    async fn claim(self: &Arc<Self>, cluster: &Cluster, name: &str, order: &JobOrder, claim: &AgentPod, pool: &PoolId) {
        let (cluster, name, order) = (cluster.clone(), name.to_owned(), order.clone());
        let record = CreatingRecord { registry: &self.registry, name: name.clone() };
        let job = order.job().clone();
        self.note_claimed(&name, &job);
        match cluster.runtime.claim_pod(&cluster.owner, claim).await {
            Ok(()) => {
                let seconds = order.decided.elapsed().as_secs_f64();
                let failures = {
                    let mut registry = self.registry.lock().unwrap();
                    registry.started(&name);
                    registry.get(&name).map(|r| r.pull_failures.clone()).unwrap_or_default()
                };
                self.metrics.pods_created.inc();
                self.note_stage(&name, Stage::AgentStarted);
                info!(pod = %name, seconds, "warm pod claimed");
                self.console(&job, console::claimed(&name, &cluster.describe(), seconds));
                for failure in failures {
                    self.console(&job, console::pre_pull_failed(&name, &failure));
                }
            }
            Err(RuntimeError::AlreadyClaimed(why)) => {
                // The pod serves the winner's job now: removing it would kill that job.
                // Its record stays, bound to a job we do not know, until a listing
                // shows whose it is (a lagging one never makes it warm again).
                info!(pod = %name, %why, "another claim won the warm pod; it is left to its job");
                self.console(&job, console::claim_lost(&name));
                self.registry.lock().unwrap().claimed_elsewhere(&name);
                drop(record);
                self.note_removed(&name, "another claim won it first; it serves that job and was left running", None);
                self.decide_again(&cluster, &order, Some(pool), true).await;
            }
            Err(e) => {
                warn!(pod = %name, error = %e, "claiming a warm pod failed; it is removed and the job gets a new pod");
                self.console(&job, console::claim_failed(&name, &e));
                let look = self.last_look(&cluster, &name).await;
                if let Err(e) = cluster.runtime.delete_pod(&cluster.owner, &name).await {
                    // Kept as a warm pod being removed: counted against the limits,
                    // serving no job, removed again by server-ping. The job's new pod
                    // must fit the limits beside it.
                    warn!(pod = %name, error = %e, "could not remove the warm pod whose claim failed; server-ping retries");
                    let shape = PoolShape { size: order.elastic.warm_pool_size, idle: order.elastic.warm_pool_idle };
                    self.registry.lock().unwrap().claim_failed(&name, pool.clone(), shape);
                    drop(record);
                    self.decide_again(&cluster, &order, Some(pool), true).await;
                    return;
                }
                self.note_removed(&name, "its claim by a job failed", look);
                self.metrics.removed("claim-failed");
                let fresh = pod::new_name();
                let built = match Self::build_pod(&cluster, &order, &fresh) {
                    Ok(built) => built,
                    Err(e) => {
                        self.registry.lock().unwrap().remove(&name);
                        self.console(&job, format!("No agent pod: {e}"));
                        return;
                    }
                };
                {
                    let mut registry = self.registry.lock().unwrap();
                    registry.insert_creating(cluster.id.clone(), &fresh, &job, self.clock.now());
                    registry.remove(&name);
                }
                drop(record);
                self.note_created(&cluster, &fresh, &job);
                self.start_pod(cluster, built, job).await;
            }
        }
    }

    /// Removes another pool's warm pod (already marked as leaving) to make room, then
    /// makes the job's pod (`pod`, registered already). When the removal fails the warm
    /// pod is left leaving for server-ping, and the job's pod is not made, which would
    /// break the limits: the job is decided again, and held at the limit.
    pub(crate) async fn evict_then_start(
        self: Arc<Self>,
        cluster: Cluster,
        evicted: String,
        pod: AgentPod,
        order: JobOrder,
        pool: Option<PoolId>,
    ) {
        let job = order.job().clone();
        let name = pod.pod.metadata.name.clone().unwrap_or_default();
        let look = self.last_look(&cluster, &evicted).await;
        match cluster.runtime.delete_pod(&cluster.owner, &evicted).await {
            Ok(()) => {
                info!(pod = %evicted, job = %job.path(), "warm pod removed to make room for a job of another profile");
                self.registry.lock().unwrap().remove(&evicted);
                self.note_removed(
                    &evicted,
                    "it was a warm pod, removed to make room for a job of another profile",
                    look,
                );
                self.metrics.removed("warm-evicted");
                self.note_created(&cluster, &name, &job);
                self.start_pod(cluster, pod, job).await;
            }
            Err(e) => {
                warn!(pod = %evicted, error = %e, "could not remove a warm pod to make room; server-ping retries");
                self.registry.lock().unwrap().remove_if_creating(&name);
                self.decide_again(&cluster, &order, pool.as_ref(), false).await;
            }
        }
    }
}
