//! create-agent, should-assign-work, job-completion and server-ping.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, instrument, warn};

use super::console;
use super::journal::{HoldReason, Limit, Stage};
use super::pools::JobOrder;
use super::{Cluster, ClusterError, Lifecycle, Service};
use crate::agents::{self, Action, ClusterSnapshot, CreateDecision, Limits, RemovalReason};
use crate::error::{Error, Result};
use crate::pod::{self, AgentPod, Binding, PodRequest};
use crate::processor::HealthMessage;
use crate::protocol::{
    CreateAgentRequest, JobCompletionRequest, ServerPingRequest, ShouldAssignWorkRequest, ValidationError,
};
use crate::runtime::StartOptions;
use crate::settings::ElasticSettings;
use crate::tls;

const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(2);

impl Service {
    #[instrument(skip_all, fields(job_id = req.job_identifier.job_id))]
    pub async fn create_agent(self: &Arc<Self>, req: CreateAgentRequest) -> Result<()> {
        let job = &req.job_identifier;
        let refuse = |message: String| {
            self.note_hold(job, None, HoldReason::Refused(message.clone()));
            self.console(job, format!("No agent pod: {message}"));
            warn!(%message, "create-agent refused");
            Err(Error::Unprocessable(message))
        };
        let elastic = match ElasticSettings::parse(&req.elastic_agent_profile_properties) {
            Ok(e) => e,
            Err(errors) => {
                return refuse(format!("the elastic agent profile is invalid: {}", ValidationError::join(&errors)));
            }
        };
        // Transient trouble (bridge or engine unreachable) answers 200: GoCD re-sends
        // create-agent while the job waits, and that is the retry.
        let cluster = match self.resolve(&req.cluster_profile_properties).await {
            Ok(c) => c,
            Err(ClusterError::Invalid(message)) => return refuse(message),
            Err(ClusterError::Transient(message)) => {
                warn!(%message, "create-agent postponed");
                self.note_hold(job, None, HoldReason::Postponed(message.clone()));
                self.console(job, format!("Waiting to create an agent pod: {message}. GoCD will ask again."));
                return Ok(());
            }
        };
        let server = self.server_info().await.map_err(|e| Error::Internal(e.to_string()))?;
        let Some(go_server_url) = cluster.settings.go_server_url.clone().or(server.secure_site_url) else {
            return refuse(
                "go_server_url is blank and GoCD has no secure site URL: set go_server_url in the cluster profile"
                    .into(),
            );
        };

        let lock = self.create_lock(&cluster.id);
        let _one_decision_at_a_time = lock.lock().await;
        let pods = match self.refresh(&cluster).await {
            Ok(pods) => pods,
            Err(e) => {
                warn!(error = %e, "create-agent postponed: cannot list pods");
                self.note_hold(job, Some(&cluster.id), HoldReason::Postponed(e.to_string()));
                self.console(job, format!("Waiting to create an agent pod: {e}. GoCD will ask again."));
                return Ok(());
            }
        };
        let registered = self.registered_agents().await;
        let limits = cluster.limits();
        let order = JobOrder { req: req.clone(), elastic, go_server_url, decided: Instant::now() };
        let pool = self.pool_of(&cluster, &order);
        if pool.is_none() && order.elastic.warm_pool_size > 0 {
            self.console(
                job,
                format!(
                    "WarmPoolSize is {}, but the {} runtime keeps no warm pods yet: pods start when their job asks.",
                    order.elastic.warm_pool_size,
                    cluster.describe()
                ),
            );
        }
        let decided = self.decide(&cluster, &order, pods, &registered, limits, pool.as_ref(), true);
        // After a claim the claim refills the pool once the job's agent started: a new
        // dockerd booting beside the claim would slow the job's start down.
        if let (Some(pool), Ok(Decided::Other)) = (&pool, &decided) {
            self.fill_pool(&cluster, &order, pool, &registered, limits);
        }
        match decided {
            Err(Error::Unprocessable(message)) => refuse(message),
            other => other.map(drop),
        }
    }

    /// The job's pod, by the rules: claimed, made, made in a warm pod's place, or held
    /// back by a limit. Each pod is registered here, under the create lock, before its
    /// work starts in the background. A warm pod the rules offer that cannot be bound
    /// after all (server-ping began removing it meanwhile) sends the decision round again.
    /// Without `evict`, no warm pod of another pool makes room: the job waits at the limit.
    #[allow(clippy::too_many_arguments)] // one decision's inputs, each named
    fn decide(
        self: &Arc<Self>,
        cluster: &Cluster,
        order: &JobOrder,
        mut pods: Vec<crate::listing::PodInfo>,
        registered: &std::collections::BTreeSet<String>,
        limits: Limits,
        pool: Option<&crate::settings::PoolId>,
        evict: bool,
    ) -> Result<Decided> {
        let job = &order.req.job_identifier;
        let plan = if evict { agents::plan_create } else { agents::plan_create_in_place };
        loop {
            match plan(&pods, registered, job.job_id, limits, pool) {
                CreateDecision::Claim(name) => {
                    let claim = Self::build_claim(cluster, order, &name)?;
                    if !self.registry.lock().unwrap().claim(&name, job, self.clock.now()) {
                        pods = self.registry.lock().unwrap().cluster_pods(&cluster.id);
                        continue;
                    }
                    let (service, cluster, order) = (Arc::clone(self), cluster.clone(), order.clone());
                    let pool = pool.cloned().expect("a job claims a warm pod of its own pool");
                    self.tasks.spawn(async move { service.claim_warm(cluster, name, order, claim, pool).await });
                    return Ok(Decided::Claimed);
                }
                CreateDecision::CreateAfterEvicting(evicted) => {
                    let name = pod::new_name();
                    let built = Self::build_pod(cluster, order, &name)?;
                    let mut registry = self.registry.lock().unwrap();
                    if !registry.begin_warm_removal(&evicted) {
                        pods = registry.cluster_pods(&cluster.id);
                        continue;
                    }
                    registry.insert_creating(cluster.id.clone(), &name, job, self.clock.now());
                    drop(registry);
                    let (service, cluster, order, pool) =
                        (Arc::clone(self), cluster.clone(), order.clone(), pool.cloned());
                    self.tasks
                        .spawn(async move { service.evict_then_start(cluster, evicted, built, order, pool).await });
                    return Ok(Decided::Other);
                }
                decision => return self.create_or_hold(cluster, order, decision).map(|()| Decided::Other),
            }
        }
    }

    /// Decides the job's pod again, as create-agent would, when its claim or eviction
    /// did not work out: under the create lock, over a fresh listing (the pods of this
    /// process when the listing fails). Without `evict` (an eviction just failed) the job
    /// waits at the limit rather than evict another pod.
    pub(crate) async fn decide_again(
        self: &Arc<Self>,
        cluster: &Cluster,
        order: &JobOrder,
        pool: Option<&crate::settings::PoolId>,
        evict: bool,
    ) {
        let lock = self.create_lock(&cluster.id);
        let _one_decision_at_a_time = lock.lock().await;
        let pods = match self.refresh(cluster).await {
            Ok(pods) => pods,
            Err(e) => {
                warn!(error = %e, "cannot list pods to place the job again; deciding over what this process knows");
                self.registry.lock().unwrap().cluster_pods(&cluster.id)
            }
        };
        let registered: std::collections::BTreeSet<String> =
            self.last_agents.lock().unwrap().iter().map(|a| a.agent_id.clone()).collect();
        let limits = cluster.limits();
        match self.decide(cluster, order, pods, &registered, limits, pool, evict) {
            Ok(Decided::Other) => {
                if let Some(pool) = pool {
                    self.fill_pool(cluster, order, pool, &registered, limits);
                }
            }
            Ok(Decided::Claimed) => {}
            Err(e) => self.console(&order.req.job_identifier, format!("No agent pod: {e}")),
        }
    }

    fn create_or_hold(self: &Arc<Self>, cluster: &Cluster, order: &JobOrder, decision: CreateDecision) -> Result<()> {
        let job = &order.req.job_identifier;
        match decision {
            CreateDecision::Claim(_) | CreateDecision::CreateAfterEvicting(_) => unreachable!("decided in `decide`"),
            CreateDecision::AlreadyExists(name) => {
                info!(pod = %name, "a pod for this job exists; nothing to do");
                Ok(())
            }
            CreateDecision::PendingLimit { pending, max } => {
                self.limit_reached(
                    cluster,
                    job,
                    Limit::Pending,
                    &format!("{pending} agent pods are waiting to register (max_pending_agents = {max})"),
                );
                Ok(())
            }
            CreateDecision::TotalLimit { total, max } => {
                self.limit_reached(
                    cluster,
                    job,
                    Limit::Total,
                    &format!("{total} agent pods exist (max_running_agents = {max})"),
                );
                Ok(())
            }
            CreateDecision::Create => {
                let name = pod::new_name();
                let built = Self::build_pod(cluster, order, &name)?;
                self.registry.lock().unwrap().insert_creating(cluster.id.clone(), &name, job, self.clock.now());
                self.note_created(cluster, &name, job);
                let (service, cluster, job) = (Arc::clone(self), cluster.clone(), job.clone());
                self.tasks.spawn(async move { service.start_pod(cluster, built, job).await });
                Ok(())
            }
        }
    }

    /// The pod for `order`'s job, under `name`, with TLS material minted for it.
    pub(crate) fn build_pod(cluster: &Cluster, order: &JobOrder, name: &str) -> Result<AgentPod> {
        Self::pod_for(cluster, order, name, order.binding(), true)
    }

    /// `pod::build` for one of the order's pods (bound to its job or a warm pod of its
    /// profile), checked; `mint_tls` is false for a claim, whose pod has its material.
    pub(crate) fn pod_for(
        cluster: &Cluster,
        order: &JobOrder,
        name: &str,
        binding: Binding<'_>,
        mint_tls: bool,
    ) -> Result<AgentPod> {
        let tls = mint_tls
            .then(|| tls::mint(name).map_err(|e| Error::Internal(format!("minting TLS material: {e}"))))
            .transpose()?;
        let request = PodRequest {
            name,
            ownership: &cluster.owner,
            go_server_url: &order.go_server_url,
            cluster: &cluster.settings,
            elastic: &order.elastic,
            binding,
            tls: tls.as_ref(),
        };
        Self::checked_pod(cluster, &request)
    }

    /// `pod::build`, then the checks that need the cluster: Secrets its profile allows,
    /// fields its runtime honours.
    pub(crate) fn checked_pod(cluster: &Cluster, request: &PodRequest<'_>) -> Result<AgentPod> {
        let name = request.name;
        let built = pod::build(request).map_err(|e| Error::Unprocessable(e.to_string()))?;
        let spec = built.pod.spec.as_ref().expect("a built pod has a spec");
        let secrets = pod::unallowed_secrets(spec, &pod::secret_name(name), &cluster.settings.allowed_secrets);
        if !secrets.is_empty() {
            return Err(Error::Unprocessable(format!("PodSpecPatch: {}", secrets.join("; "))));
        }
        let unsupported = cluster.runtime.unsupported(&built);
        if !unsupported.is_empty() {
            let problems = unsupported.join("; ");
            return Err(Error::Unprocessable(format!(
                "the {} runtime cannot run this pod: {problems}",
                cluster.describe()
            )));
        }
        Ok(built)
    }

    pub(crate) async fn start_pod(
        self: &Arc<Self>,
        cluster: Cluster,
        pod: AgentPod,
        job: crate::protocol::JobIdentifier,
    ) {
        let name = pod.pod.metadata.name.clone().unwrap_or_default();
        let _record = CreatingRecord { registry: &self.registry, name: name.clone() };
        self.console(&job, console::creating(&name, &cluster.describe(), &job.path()));
        let started = Instant::now();
        let console = {
            let (service, job) = (Arc::clone(self), job.clone());
            Box::new(move |line: String| service.console(&job, line))
        };
        let dockerd_ready = {
            let (service, name, job) = (Arc::clone(self), name.clone(), job.clone());
            Box::new(move || {
                service.note_stage(&name, Stage::DockerdReady);
                service.console(&job, console::dockerd_ready(&name, started.elapsed().as_secs_f64()));
            })
        };
        let start = StartOptions { budget: cluster.settings.auto_register_timeout, progress: console, dockerd_ready };
        match cluster.runtime.create_pod(&pod, &start).await {
            Ok(()) => {
                let seconds = started.elapsed().as_secs_f64();
                self.metrics.pods_created.inc();
                self.metrics.pod_ready_seconds.observe(seconds);
                self.note_stage(&name, Stage::AgentStarted);
                self.registry.lock().unwrap().started(&name);
                info!(pod = %name, seconds, "pod started");
                self.console(&job, console::started(&name, seconds));
            }
            Err(e) => {
                let reason = e.to_string();
                self.metrics
                    .pod_create_failures
                    .get_or_create(&crate::metrics::Reason { reason: failure_kind(&e).into() })
                    .inc();
                self.registry.lock().unwrap().remove(&name);
                self.note_start_failure(&cluster, &name, &e).await;
                warn!(pod = %name, error = %reason, "pod failed to start and was removed");
                self.console(&job, console::failed(&name, &e));
            }
        }
    }

    fn limit_reached(&self, cluster: &Cluster, job: &crate::protocol::JobIdentifier, limit: Limit, why: &str) {
        self.note_hold(job, Some(&cluster.id), HoldReason::Limit(limit, why.to_owned()));
        let text = format!("gocd-dind ({}): {why}; job {} waits for a free slot.", cluster.describe(), job.path());
        info!(cluster = %cluster.id, "{why}");
        self.console(job, format!("Not creating an agent pod yet: {why}. GoCD will ask again."));
        self.set_health(&cluster.id, Some(HealthMessage { kind: "warning", message: text }));
    }

    /// Memory only: this is on every elastic agent's work-request path.
    pub fn should_assign_work(self: &Arc<Self>, req: &ShouldAssignWorkRequest) -> bool {
        let registry = self.registry.lock().unwrap();
        if let Some(record) = registry.get(&req.agent.agent_id) {
            let assign = agents::should_assign(
                Some(record.info.job_id),
                record.lifecycle == Lifecycle::Terminating,
                req.job_identifier.job_id,
            );
            drop(registry);
            // Only a registered agent asks for work.
            self.note_stage(&req.agent.agent_id, Stage::Registered);
            if assign {
                self.note_stage(&req.agent.agent_id, Stage::Assigned);
            }
            return assign;
        }
        drop(registry);
        // Unknown agent: after a restart the registry is empty until the next listing.
        // Answer now and refresh in the background; the agent asks again shortly.
        let service = Arc::clone(self);
        let props = req.cluster_profile_properties.clone();
        self.tasks.spawn(async move { service.refresh_after_unknown_agent(&props).await });
        false
    }

    /// Lists the cluster's pods into the registry, at most once every few seconds per
    /// cluster: after a restart every agent asks at once.
    async fn refresh_after_unknown_agent(&self, props: &crate::protocol::Properties) {
        let Ok(cluster) = self.resolve(props).await else { return };
        {
            let mut last = self.last_refresh.lock().unwrap();
            if last.get(&cluster.id).is_some_and(|at| at.elapsed() < REFRESH_AT_MOST_EVERY) {
                return;
            }
            last.insert(cluster.id.clone(), Instant::now());
        }
        let _ = self.refresh(&cluster).await;
    }

    /// Disable the agent, remove the pod and all it owns, delete the agent. A step that
    /// fails is left for server-ping, which finds a disabled agent or an orphaned pod.
    #[instrument(skip_all, fields(agent = %req.elastic_agent_id, job_id = req.job_identifier.job_id))]
    pub async fn job_completion(&self, req: JobCompletionRequest) -> Result<()> {
        let name = req.elastic_agent_id.clone();
        self.note_stage(&name, Stage::Completed);
        let recorded = {
            let mut registry = self.registry.lock().unwrap();
            registry.set_lifecycle(&name, Lifecycle::Terminating);
            registry.get(&name).map(|r| r.cluster.clone())
        };
        let mut candidates: Vec<Cluster> = recorded.and_then(|id| self.known_cluster(&id)).into_iter().collect();
        if candidates.is_empty() && !req.cluster_profile_properties.0.is_empty() {
            match self.resolve(&req.cluster_profile_properties).await {
                Ok(c) => candidates.push(c),
                Err(e) => warn!(error = %e, "job-completion: cannot resolve the cluster profile"),
            }
        }
        if candidates.is_empty() {
            candidates = self.known_clusters();
        }
        // The pod may live where its profile pointed before it was re-pointed or deleted.
        candidates.extend(self.orphan_clusters_holding(&name));
        if let Err(e) = self.processor.disable_agents(std::slice::from_ref(&name)).await {
            warn!(error = %e, "could not disable the agent; server-ping retries");
        }
        let mut removed = false;
        let mut look = None;
        for cluster in &candidates {
            if look.is_none() {
                look = self.last_look(cluster, &name).await;
            }
            match cluster.runtime.delete_pod(&cluster.owner, &name).await {
                Ok(()) => removed = true,
                Err(e) => warn!(error = %e, cluster = %cluster.id, "could not remove the pod; server-ping retries"),
            }
        }
        if removed {
            self.registry.lock().unwrap().remove(&name);
            self.note_removed(&name, "its job completed", look);
            self.metrics.removed("job-completed");
            if let Err(e) = self.processor.delete_agents(std::slice::from_ref(&name)).await {
                warn!(error = %e, "could not delete the agent; server-ping retries");
            }
            info!("pod removed after job completion");
        }
        Ok(())
    }

    /// Reconciles every cluster profile GoCD lists: see `agents::plan_ping` for the rules.
    #[instrument(skip_all, fields(clusters = req.all_cluster_profile_properties.len()))]
    pub async fn server_ping(&self, req: ServerPingRequest) -> Result<()> {
        let _one_ping_at_a_time = self.ping_lock.lock().await;
        let mut snapshots: Vec<ClusterSnapshot> = Vec::new();
        let mut clusters = Vec::new();
        let mut complete = true;
        self.note_cluster_profiles(&req.all_cluster_profile_properties, true);
        self.follow_profiles(&req.all_cluster_profile_properties).await;
        for props in &req.all_cluster_profile_properties {
            let cluster = match self.resolve(props).await {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "server-ping skips a cluster profile; nothing is removed on the strength of it");
                    complete = false;
                    continue;
                }
            };
            // Profiles that name one cluster share its pods: one snapshot, and no pod
            // removed as never registered before the longest of their timeouts, nor as
            // beyond a limit another of them allows.
            let limits = cluster.limits();
            if let Some(seen) = snapshots.iter_mut().find(|s| s.cluster == cluster.id) {
                seen.auto_register_timeout = seen.auto_register_timeout.max(cluster.settings.auto_register_timeout);
                seen.limits.max_pending = seen.limits.max_pending.max(limits.max_pending);
                seen.limits.max_total = seen.limits.max_total.max(limits.max_total);
                continue;
            }
            match self.refresh(&cluster).await {
                Ok(pods) => {
                    snapshots.push(ClusterSnapshot {
                        cluster: cluster.id.clone(),
                        pods,
                        auto_register_timeout: cluster.settings.auto_register_timeout,
                        limits,
                        pools: self.pool_shapes(&cluster.id),
                    });
                    clusters.push(cluster);
                }
                Err(e) => {
                    warn!(error = %e, cluster = %cluster.describe(), "server-ping cannot list pods; nothing is removed for this profile");
                    complete = false;
                }
            }
        }
        let agents = match self.processor.list_agents().await {
            Ok(agents) => agents,
            Err(e) => {
                warn!(error = %e, "server-ping: list-agents failed; retrying at the next ping");
                return Ok(());
            }
        };
        self.note_agents(&agents);
        self.last_agents.lock().unwrap().clone_from(&agents);
        let actions = agents::plan_ping(&snapshots, &agents, self.clock.now(), complete);
        self.execute(&clusters, actions).await;
        self.clear_resolved_limits(&clusters, &agents);
        Ok(())
    }

    async fn execute(&self, clusters: &[Cluster], actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::DisableAgents(ids) => {
                    info!(?ids, "disabling agents");
                    if let Err(e) = self.processor.disable_agents(&ids).await {
                        warn!(error = %e, "disable-agents failed; retrying at the next ping");
                    }
                }
                Action::DeletePod { cluster, name, reason } => {
                    let Some(cluster) = clusters.iter().find(|c| c.id == cluster) else { continue };
                    let warm_rule = matches!(
                        reason,
                        RemovalReason::WarmIdle
                            | RemovalReason::WarmSurplus
                            | RemovalReason::WarmNotUp
                            | RemovalReason::WarmRetried
                    );
                    let removable = {
                        let mut registry = self.registry.lock().unwrap();
                        // A warm pod a job claimed since the listing is that job's now.
                        let removable = !warm_rule || registry.begin_warm_removal(&name);
                        if removable {
                            registry.set_lifecycle(&name, Lifecycle::Terminating);
                        }
                        removable
                    };
                    if !removable {
                        continue;
                    }
                    let look = self.last_look(cluster, &name).await;
                    match cluster.runtime.delete_pod(&cluster.owner, &name).await {
                        Ok(()) => {
                            info!(pod = %name, reason = reason.as_str(), "pod removed by server-ping");
                            self.registry.lock().unwrap().remove(&name);
                            self.note_removed(&name, reason.explain(), look);
                            self.metrics.removed(reason.as_str());
                        }
                        Err(e) => warn!(pod = %name, error = %e, "could not remove the pod; retrying at the next ping"),
                    }
                }
                Action::DeleteAgents(ids) => {
                    info!(?ids, "deleting agents");
                    if let Err(e) = self.processor.delete_agents(&ids).await {
                        warn!(error = %e, "delete-agents failed; retrying at the next ping");
                    }
                }
            }
        }
    }

    fn clear_resolved_limits(&self, clusters: &[Cluster], agents: &[crate::protocol::AgentMetadata]) {
        let registered = agents.iter().map(|a| a.agent_id.clone()).collect();
        for cluster in clusters.iter().filter(|c| self.has_health(&c.id)) {
            let pods = self.registry.lock().unwrap().cluster_pods(&cluster.id);
            let limits = cluster.limits();
            // A job id no pod has: would a new pod be allowed now?
            let allowed = agents::plan_create(&pods, &registered, i64::MIN, limits, None);
            if matches!(allowed, CreateDecision::Create | CreateDecision::CreateAfterEvicting(_)) {
                self.set_health(&cluster.id, None);
            }
        }
    }
}

/// What `decide` did, as far as filling the pool goes.
enum Decided {
    /// A warm pod was claimed: the claim refills the pool when it is done.
    Claimed,
    Other,
}

/// A pod's `Creating` record lives no longer than the task that creates the pod: when
/// the task ends any other way than through its own bookkeeping (a panic in a runtime,
/// the task dropped), the record goes too. Left behind, it would answer every later
/// create-agent for the job with "a pod exists", and the job would wait forever.
pub(crate) struct CreatingRecord<'a> {
    pub registry: &'a std::sync::Mutex<super::Registry>,
    pub name: String,
}

impl Drop for CreatingRecord<'_> {
    fn drop(&mut self) {
        let mut registry = self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if registry.remove_if_creating(&self.name).is_some() {
            warn!(pod = %self.name, "the pod's creation ended abnormally; its record is dropped");
        }
    }
}

pub(super) fn failure_kind(error: &crate::runtime::RuntimeError) -> &'static str {
    use crate::runtime::RuntimeError;
    match error {
        RuntimeError::Unreachable(_) => "unreachable",
        RuntimeError::Rejected(_) => "rejected",
        RuntimeError::DaemonNotReady { .. } => "dockerd-not-ready",
        RuntimeError::AlreadyClaimed(_) => "already-claimed",
        RuntimeError::Other(_) => "other",
    }
}
