//! The GoCD rules as pure functions over snapshots: what to create, what to assign, what
//! to remove. No I/O here; the service gathers the snapshots and carries out the actions.
//! The warm pools' own rules (which warm pods to make, claim and remove) are in [`pool`].

pub mod pool;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use crate::listing::{PodInfo, PodPhase, PoolShape};
use crate::protocol::AgentMetadata;
use crate::settings::{ClusterId, PoolId};

/// The limits of one cluster profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_pending: usize,
    pub max_total: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateDecision {
    Create,
    /// A warm pod of the job's pool is up: bind it to the job and start its agent.
    Claim(String),
    /// A limit is reached only because of warm pods waiting for other profiles' jobs:
    /// remove this one, then create. A job waiting never loses to an idle warm pod.
    CreateAfterEvicting(String),
    /// A pod for this job exists (or is being created): GoCD re-sends create-agent
    /// while a job waits, from several threads.
    AlreadyExists(String),
    PendingLimit {
        pending: usize,
        max: usize,
    },
    TotalLimit {
        total: usize,
        max: usize,
    },
}

/// `pods` are this cluster profile's pods, including those still being created and warm
/// pods; `registered` are the agent ids GoCD knows; `pool` is the warm pool the job's
/// profiles name, when they keep one. In order: the job's own pod, a warm pod of its
/// pool to claim (claiming changes no count: the pod exists already), a new pod within
/// the limits, a new pod in place of another pool's warm pod, a limit.
pub fn plan_create(
    pods: &[PodInfo],
    registered: &BTreeSet<String>,
    job_id: i64,
    limits: Limits,
    pool: Option<&PoolId>,
) -> CreateDecision {
    if let Some(pod) = pods.iter().find(|p| p.serves(job_id)) {
        return CreateDecision::AlreadyExists(pod.name.clone());
    }
    if let Some(name) = pool.and_then(|pool| pool::claimable(pods, pool)) {
        return CreateDecision::Claim(name);
    }
    let Some(limit) = limit_reached(pods, registered, limits, 0) else { return CreateDecision::Create };
    match pool::evictable(pods, pool) {
        Some(name) if limit_reached(pods, registered, limits, 1).is_none() => CreateDecision::CreateAfterEvicting(name),
        _ => limit,
    }
}

/// As [`plan_create`], but no warm pod is removed to make room: after an eviction
/// failed, the job waits at the limit rather than take other pools' pods one by one.
pub fn plan_create_in_place(
    pods: &[PodInfo],
    registered: &BTreeSet<String>,
    job_id: i64,
    limits: Limits,
    pool: Option<&PoolId>,
) -> CreateDecision {
    match plan_create(pods, registered, job_id, limits, pool) {
        CreateDecision::CreateAfterEvicting(_) => {
            limit_reached(pods, registered, limits, 0).expect("an eviction is planned only at a limit")
        }
        decision => decision,
    }
}

/// The limit one more pod would break, once `freed` unregistered pods are gone.
fn limit_reached(
    pods: &[PodInfo],
    registered: &BTreeSet<String>,
    limits: Limits,
    freed: usize,
) -> Option<CreateDecision> {
    let total = pods.len().saturating_sub(freed);
    if total >= limits.max_total {
        return Some(CreateDecision::TotalLimit { total, max: limits.max_total });
    }
    let pending = pending(pods, registered).saturating_sub(freed);
    if pending >= limits.max_pending {
        return Some(CreateDecision::PendingLimit { pending, max: limits.max_pending });
    }
    None
}

/// Pods whose agent has not registered: starting, warm, or never registered.
fn pending(pods: &[PodInfo], registered: &BTreeSet<String>) -> usize {
    pods.iter().filter(|p| !registered.contains(&p.name)).count()
}

/// Only the pod created for this very job, and never one being torn down (gocd/gocd#3095:
/// a job must not land on an agent that cleanup is removing).
pub fn should_assign(pod_job_id: Option<i64>, terminating: bool, job_id: i64) -> bool {
    pod_job_id == Some(job_id) && !terminating
}

/// One cluster profile as server-ping sees it.
#[derive(Debug, Clone)]
pub struct ClusterSnapshot {
    pub cluster: ClusterId,
    pub pods: Vec<PodInfo>,
    pub auto_register_timeout: Duration,
    pub limits: Limits,
    /// The size and idle time of each pool as its profile last asked (create-agent):
    /// newer than the labels of pods made before a resize. Pools missing here (after a
    /// restart, until a job of the profile asks) go by their pods' labels.
    pub pools: BTreeMap<PoolId, PoolShape>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Stop GoCD assigning work to these agents; deleted on a later ping.
    DisableAgents(Vec<String>),
    DeletePod {
        cluster: ClusterId,
        name: String,
        reason: RemovalReason,
    },
    DeleteAgents(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RemovalReason {
    NeverRegistered,
    Stopped,
    Unused,
    /// A warm pod no job claimed within its pool's idle time.
    WarmIdle,
    /// A warm pod beyond its pool's size or the cluster profile's limits.
    WarmSurplus,
    /// A warm pod nobody here was making that did not come up within
    /// `auto_register_timeout`.
    WarmNotUp,
    /// A warm pod whose earlier removal did not finish (server-ping's, an eviction's, or
    /// that of a pod whose claim failed).
    WarmRetried,
}

impl RemovalReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NeverRegistered => "never-registered",
            Self::Stopped => "stopped",
            Self::Unused => "unused",
            Self::WarmIdle => "warm-idle",
            Self::WarmSurplus => "warm-surplus",
            Self::WarmNotUp => "warm-not-up",
            Self::WarmRetried => "warm-retried",
        }
    }

    /// Why server-ping removed a pod, as its post-mortem says.
    pub fn explain(self) -> &'static str {
        match self {
            Self::NeverRegistered => "its agent never registered within auto_register_timeout",
            Self::Stopped => "it stopped (a container exited)",
            Self::Unused => "its job was cancelled before it got it, and GoCD disabled the agent",
            Self::WarmIdle => "it was a warm pod no job claimed within WarmPoolIdleMinutes",
            Self::WarmSurplus => "it was a warm pod beyond its pool's size or the cluster profile's limits",
            Self::WarmNotUp => "it was a warm pod that did not come up within auto_register_timeout",
            Self::WarmRetried => {
                "it was a warm pod whose earlier removal did not finish (after its claim failed, to make room for \
                 a job, or by an earlier server-ping)"
            }
        }
    }
}

/// server-ping's reconciliation, in the order the actions must run: disable, delete
/// pods, delete agents.
///
/// - A pod whose agent never registered within the timeout is removed.
/// - A registered, idle agent whose pod outlived the timeout never got its job (it was
///   cancelled before assignment, which sends no job-completion): disable it now, remove
///   it on a later ping once GoCD confirms it is disabled.
/// - A disabled, idle agent: remove its pod, then the agent.
/// - An agent with no pod in any cluster profile is removed, but only when every
///   listing succeeded (`complete`): an unreachable engine must not look like gone pods.
/// - An agent that is `Building` is never touched, and neither is its pod.
/// - Warm pods follow their pool's rules ([`pool::plan_drain`]), never the
///   auto-register timeout: no agent is meant to register in them.
pub fn plan_ping(
    clusters: &[ClusterSnapshot],
    agents: &[AgentMetadata],
    now: SystemTime,
    complete: bool,
) -> Vec<Action> {
    let agents_by_id: HashMap<&str, &AgentMetadata> = agents.iter().map(|a| (a.agent_id.as_str(), a)).collect();
    let mut disable = BTreeSet::new();
    let mut delete_agents = BTreeSet::new();
    let mut delete_pods = Vec::new();

    let registered: BTreeSet<String> = agents.iter().map(|a| a.agent_id.clone()).collect();
    for cluster in clusters {
        for (name, reason) in pool::plan_drain(cluster, &registered, now) {
            delete_pods.push(Action::DeletePod { cluster: cluster.cluster.clone(), name, reason });
        }
        for pod in cluster.pods.iter().filter(|p| p.warm.is_none()) {
            let expired = now.duration_since(pod.created).unwrap_or_default() >= cluster.auto_register_timeout;
            let stopped = matches!(pod.phase, PodPhase::Stopped(_));
            let mut remove = |reason| {
                delete_pods.push(Action::DeletePod {
                    cluster: cluster.cluster.clone(),
                    name: pod.name.clone(),
                    reason,
                });
            };
            let Some(agent) = agents_by_id.get(pod.name.as_str()) else {
                if stopped {
                    remove(RemovalReason::Stopped);
                } else if expired {
                    remove(RemovalReason::NeverRegistered);
                }
                continue;
            };
            if agent.is_building() || !agent.is_idle_or_gone() {
                continue;
            }
            if agent.is_disabled() {
                remove(RemovalReason::Unused);
                delete_agents.insert(agent.agent_id.clone());
            } else if agent.is_enabled() && (expired || stopped) {
                disable.insert(agent.agent_id.clone());
            }
        }
    }
    if complete {
        let pod_names: BTreeSet<&str> = clusters.iter().flat_map(|c| c.pods.iter().map(|p| p.name.as_str())).collect();
        for agent in agents.iter().filter(|a| !pod_names.contains(a.agent_id.as_str()) && !a.is_building()) {
            if !agent.is_disabled() {
                disable.insert(agent.agent_id.clone());
            }
            delete_agents.insert(agent.agent_id.clone());
        }
    }

    let mut actions = Vec::new();
    if !disable.is_empty() {
        actions.push(Action::DisableAgents(disable.into_iter().collect()));
    }
    actions.extend(delete_pods);
    if !delete_agents.is_empty() {
        actions.push(Action::DeleteAgents(delete_agents.into_iter().collect()));
    }
    actions
}

#[cfg(test)]
mod tests;
